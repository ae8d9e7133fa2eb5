"""The scenarios of design section 8, one module each; each repetition yields `Figures`."""
