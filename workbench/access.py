"""Who may do what in the browser: the owner, viewers, and what neither can do unless the owner allowed it where the
app starts.

Bound to this machine alone (the default, `localhost`), whoever opens the page is the owner. Reachable from a
network, the app asks for a token first, as notebook servers do:

    RLHF_WORKBENCH_TOKEN          the owner's token: everything (start, stop, delete, export, label)
    RLHF_WORKBENCH_VIEWER_TOKEN   the audience's token: watch live runs, Compare and Home's results, nothing more

Tokens not set are generated when the app starts and printed with the links (`python -m workbench.share`, or the
console of the first visit). Setting either token asks for one on localhost too.

Two things no visitor can switch on from a page, since each runs or reads what the owner may not expect:

    RLHF_WORKBENCH_REMOTE_CODE=1  the stage forms may set `trust_remote_code` (a model's own Python then runs as
                                  the owner, with the owner's tokens and files)
    RLHF_WORKBENCH_ANY_PATH=1     the pages may read any local path; otherwise only sample_data/ and the runs folder
                                  (uploads and studio exports included). Hub ids are always allowed.
"""

from __future__ import annotations

import functools
import hmac
import os
import secrets
import sys
from pathlib import Path

import streamlit as st

from pipelines.data.formats import hub_source
from pipelines.runtime.runs import default_runs_dir

OWNER, VIEWER = "owner", "viewer"
TOKEN_ENV, VIEWER_TOKEN_ENV = "RLHF_WORKBENCH_TOKEN", "RLHF_WORKBENCH_VIEWER_TOKEN"
REMOTE_CODE_ENV, ANY_PATH_ENV = "RLHF_WORKBENCH_REMOTE_CODE", "RLHF_WORKBENCH_ANY_PATH"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
REPO = Path(__file__).resolve().parents[1]


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def remote_code_allowed() -> bool:
    return _on(REMOTE_CODE_ENV)


def any_path_allowed() -> bool:
    return _on(ANY_PATH_ENV)


def tokens_required(address: str | None = None) -> bool:
    """Whether a visitor must give a token: the app listens beyond this machine, or the owner set one."""
    address = st.get_option("server.address") if address is None else address
    return address not in LOOPBACK or bool(os.environ.get(TOKEN_ENV) or os.environ.get(VIEWER_TOKEN_ENV))


@functools.cache
def tokens() -> dict[str, str]:
    """The owner's and the viewers' tokens: as set in the environment, else made once per app process (and said on
    its console, where the owner started it)."""
    made = {}
    for role, name in ((OWNER, TOKEN_ENV), (VIEWER, VIEWER_TOKEN_ENV)):
        made[role] = os.environ.get(name) or secrets.token_urlsafe(18)
        if not os.environ.get(name):
            print(f"RLHF Workbench {role} token: {made[role]} (open the app with ?token={made[role]})",
                  file=sys.stderr, flush=True)
    return made


def role_of(token: str) -> str | None:
    for role, expected in tokens().items():
        if token and hmac.compare_digest(token.encode(), expected.encode()):
            return role
    return None


def gate() -> str:
    """The visitor's role. Asks for a token where one is required, and stops the page until a right one is given.
    The token stays in the address (`?token=...`), so a refresh or a shared link keeps the role."""
    if not tokens_required():
        return OWNER
    role = st.session_state.get("access.role")
    if role is None and (role := role_of(st.query_params.get("token", ""))):
        st.session_state["access.role"], st.session_state["access.token"] = role, st.query_params["token"]
    if role is None:
        login()
        st.stop()
    st.query_params["token"] = st.session_state["access.token"]  # page changes drop it from the address
    return role


def login() -> None:
    st.title("RLHF Workbench")
    st.markdown("This workbench is shared on a network: it needs the access token its owner gave you.")
    with st.form("login"):
        token = st.text_input("Access token", type="password")
        if st.form_submit_button("Open", type="primary"):
            if role := role_of(token.strip()):
                st.session_state["access.role"], st.session_state["access.token"] = role, token.strip()
                st.rerun()
            st.error("That token is not right. Ask the owner for the link (it holds the token).")
    st.caption("Owner: the tokens were printed where the app started (`python -m workbench.share`), or set with "
               f"{TOKEN_ENV} and {VIEWER_TOKEN_ENV}.")


def role() -> str:
    """The role `gate` found for this session (the owner where no token is required)."""
    return st.session_state.get("access.role", VIEWER) if tokens_required() else OWNER  # unknown: no controls


def can_act() -> bool:
    """Start, stop, delete, export, label: the owner's, never a viewer's."""
    return role() == OWNER


def allowed_roots() -> list[Path]:
    return [REPO / "sample_data", default_runs_dir().resolve()]


def path_problem(field: str, value: str) -> str | None:
    """Why a page may not read `value` (a file, folder or model typed into `field`), or None. What is not a local
    path is a Hub id, which the pipelines fetch as such."""
    if any_path_allowed() or not value or not isinstance(value, str):
        return None
    outside = next((part for part in local_parts(value) if not readable(part)), None)
    if outside is None:
        return None
    return (f"`{field}`: `{outside}` is outside the folders this app's pages may read (sample_data/ and "
            f"`{default_runs_dir()}`, uploads included). Fix: upload the file on the Data page, or copy it under "
            f"`{default_runs_dir() / 'uploads'}`; the owner can let the pages read any path by starting the app "
            f"with {ANY_PATH_ENV}=1.")


def local_parts(value: str) -> list[str]:
    """Every part of a field's value the pipelines may read from disk: each of a comma-separated list (Compare's
    runs), and of a dataset `name[:config][:split]` the name and the config (a folder's data_dir)."""
    parts = []
    for part in (p.strip() for p in value.split(",")):
        if part and part not in ("default", "latest"):
            parts.append(part)
            if source := hub_source(part):
                parts += [piece for piece in source[:2] if piece]
    return parts


def readable(part: str) -> bool:
    """A path inside sample_data/ or the runs folder, or no local path at all (a Hub id)."""
    path = Path(part).expanduser()
    path = (path if path.is_absolute() else REPO / path).resolve()
    return not path.exists() or any(path.is_relative_to(root.resolve()) for root in allowed_roots())


def remote_code_problem(value: bool) -> str | None:
    if value and not remote_code_allowed():
        return (f"`trust_remote_code` would run the model's own Python as this app's owner. Fix: the owner allows it "
                f"by starting the app with {REMOTE_CODE_ENV}=1 (or runs it from the command line).")
    return None
