"""Run capabilities: signed, scoped to a run and its workspace, expiring, not a bearer token."""

from __future__ import annotations

import pytest

from broker.errors import AuthError
from broker.web.auth import mint_token, verify_token
from broker.web.capability import mint_capability, verify_capability
from models.ids import RunId, WorkspaceId, new_id

SECRET = "capability-test-secret-0123456789"


def test_a_capability_names_its_run_and_workspace_until_it_expires() -> None:
    run, workspace = RunId(new_id()), WorkspaceId(new_id())
    capability = mint_capability(SECRET, run, workspace, ttl_s=60, now=1_000)
    granted = verify_capability(SECRET, capability, now=1_059)
    assert (granted.run_id, granted.workspace_id, granted.expires_at) == (run, workspace, 1_060)
    with pytest.raises(AuthError, match="expired"):
        verify_capability(SECRET, capability, now=1_060)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: "",
        lambda c: c.replace(".", ""),
        lambda c: c[:-2] + ("A" if c[-2] != "A" else "B") + c[-1],
        lambda c: "e" + c,
        lambda c: c + "é",
        lambda c: "é." + c.partition(".")[2],
        lambda c: c.partition(".")[0] + ".",
    ],
)
def test_a_mangled_capability_is_refused(mangle: object) -> None:
    capability = mint_capability(SECRET, RunId(new_id()), WorkspaceId(new_id()), ttl_s=60)
    with pytest.raises(AuthError):
        verify_capability(SECRET, mangle(capability))  # type: ignore[operator]


def test_capabilities_and_bearer_tokens_do_not_pass_for_each_other() -> None:
    workspace = WorkspaceId(new_id())
    with pytest.raises(AuthError):
        verify_capability(SECRET, mint_token(SECRET, workspace))
    with pytest.raises(AuthError):
        verify_token(SECRET, mint_capability(SECRET, RunId(new_id()), workspace, ttl_s=60))
    with pytest.raises(AuthError):
        verify_capability("another-secret", mint_capability(SECRET, RunId(new_id()), workspace, 60))
