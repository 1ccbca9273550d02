"""One owner for each piece of state, checked in the source (issue 13): a change that writes a
video's status or the `state` table from a second place, or brings back the pipeline <->
worker import circle, fails here with the file and line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app" / "venuecam"
STATE_SQL = re.compile(r'(INSERT( OR \w+)? INTO|\bFROM|\bUPDATE|\bDELETE FROM) "?state"?(\s|\(|$)')


def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(APP)): ast.parse(p.read_text(), str(p)) for p in sorted(APP.rglob("*.py"))}


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def test_only_shared_state_touches_the_state_table() -> None:
    from venuecam import shared_state
    from venuecam.models import State

    assert State._meta.table_name == shared_state.TABLE
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in modules().items()
        if name not in ("shared_state.py", "models.py")
        for node in ast.walk(tree)
        if "venuecam.models.State" in imported(node)
        # SQL of its own on the table (the capture programs use shared_state's)
        or (isinstance(node, ast.Constant) and isinstance(node.value, str) and STATE_SQL.search(node.value))
    ]
    assert offenders == []


def test_only_videos_writes_a_video_status() -> None:
    offenders = []
    for name, tree in modules().items():
        if name == "videos.py":
            continue
        for node in ast.walk(tree):
            # Video.update(status=...), Video.create(status=...)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "Video"
                and any(k.arg == "status" for k in node.keywords)
            ):
                offenders.append(f"{name}:{node.lineno}")
            # video.status = ...
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if (
                        isinstance(t, ast.Attribute)
                        and t.attr == "status"
                        and "video" in ast.unparse(t.value)
                    ):
                        offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_only_the_watchdog_prunes_the_connectivity_log() -> None:
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in modules().items()
        if name != "watchdog/service.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "delete"
        and "ConnectivityLog" in ast.unparse(node.func.value)
    ]
    assert offenders == []


def test_the_flow_does_not_import_the_worker_and_the_worker_hides_no_imports() -> None:
    """The flow (pipeline, ledger, videos, the booking, clip, storage and job code) knows
    nothing of huey; the worker imports at module level (main.py's `run` aside: it must
    import after `lean.leave_out`)."""
    trees = modules()
    flow = [n for n in trees if n.split("/")[0] in ("booking", "clips", "storage", "jobs")]
    flow += ["pipeline.py", "ledger.py", "videos.py", "redrive.py", "retry.py", "shared_state.py"]
    circle = [
        f"{name}:{node.lineno}"
        for name in flow
        for node in ast.walk(trees[name])
        if any(m.startswith("venuecam.worker") for m in imported(node))
    ]
    assert circle == []
    hidden = []
    for name, tree in trees.items():
        if not (name.startswith("worker/") or name == "pipeline.py") or name == "worker/main.py":
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                hidden += [
                    f"{name}:{n.lineno}" for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)
                ]
    assert hidden == []
