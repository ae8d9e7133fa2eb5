# One image for both services: `broker serve` and `broker agents`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY models models
COPY broker broker
COPY subscribe subscribe
COPY agents agents
COPY durable durable
COPY migrations migrations
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000 8001
CMD ["broker", "serve", "--host", "0.0.0.0"]
