"""A grading worker: ``python -m minillm.course.worker``, started by :class:`minillm.course.isolate.Worker`.

It reads one JSON job per line from the pipe it was started with, grades the submission in a fresh
kernel, kills every process the submission left (:func:`~minillm.course.isolate.kill_tree`) and
only then answers one JSON line. See :mod:`minillm.course.isolate` for why.

:func:`grade_hidden` is ``minillm grade`` itself: on Linux it re-executes the process as
``python -m minillm.course.worker --main FD`` and reads its options from that pipe, so that
``/proc/<pid>/cmdline`` of the main process no longer names the ``--json``/``--csv`` files.
"""

from __future__ import annotations

import json
import os
import sys

from minillm.course.isolate import become_subreaper, hide_from_same_user, kill_tree

__all__ = ["main"]


def main() -> int:
    """The worker: read one JSON job per line on the inherited stdin, grade it, answer one JSON line."""
    inp = os.fdopen(os.dup(0), "r", encoding="utf-8")
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")  # os.dup makes non-inheritable copies
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    become_subreaper()
    hide_from_same_user()  # the kernels it starts cannot read its /proc/<pid>/{cwd,fd,environ,mem}
    from minillm.course import grade as grade_mod
    from minillm.course.checks import tasks

    tasks()  # every lesson's checks imported now, before any submission's code runs
    token = inp.readline().strip()  # sent once, before any kernel exists: replies carry it

    for line in inp:
        try:
            job = json.loads(line)
            grade_mod.STATIC_ANALYSIS = bool(job.get("static", True))
            rows = grade_mod.grade_notebook(job["path"], root=job.get("root"), timeout=job["timeout"],
                                            label=job.get("label"), releases=job.get("releases"),
                                            memory=job.get("memory"))
            reply = {"rows": [r.to_dict() for r in rows]}
        except grade_mod.GradeError as e:
            reply = {"grade_error": str(e)}
        except Exception as e:  # noqa: BLE001 - one submission's failure is its own row
            reply = {"error": f"the grader failed on this submission: {type(e).__name__}: {str(e)[:200]}"}
        kill_tree()  # every process of this submission is gone before its result is sent
        reply["token"] = token
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


def grade_hidden(options: dict) -> int:
    """Run ``minillm grade`` with ``options`` (grade_paths' keywords and ``paths``) from a process whose
    command line holds none of them (Linux: ``os.execv`` with the options on an inherited pipe)."""
    if not sys.platform.startswith("linux") or os.environ.get("MINILLM_GRADE_NO_EXEC"):
        return _grade_now(options)
    r, w = os.pipe()
    os.write(w, json.dumps(options).encode("utf-8"))  # a few hundred bytes: fits the pipe's buffer
    os.close(w)
    os.set_inheritable(r, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "minillm.course.worker", "--main", str(r)])
    return 1  # not reached


def _grade_now(options: dict) -> int:
    from minillm.course.grade import GradeError, grade_paths
    from minillm.course.isolate import SandboxError

    paths = options.pop("paths")
    try:
        _, code = grade_paths(paths, progress=True, **options)
    except (GradeError, SandboxError) as e:
        print(f"minillm grade: error: {e}", file=sys.stderr)
        return 2
    for out in (options.get("json_out"), options.get("csv_out")):
        if out is not None:
            print(f"wrote {out}")
    return code


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--main":
        hide_from_same_user()  # the main process: no kernel may find the output files through its /proc entries
        with os.fdopen(int(sys.argv[2]), "rb") as f:
            opts = json.loads(f.read().decode("utf-8"))
        sys.exit(_grade_now(opts))
    sys.exit(main())
