"""A grading worker: ``python -m minillm.course.worker``, started by :class:`minillm.course.isolate.Worker`.

It reads one JSON job per line from the pipe it was started with, grades the submission in a fresh
kernel, kills every process the submission left (:func:`~minillm.course.isolate.kill_tree`) and
only then answers one JSON line. See :mod:`minillm.course.isolate` for why.
"""

from __future__ import annotations

import json
import os
import sys

from minillm.course.isolate import become_subreaper, kill_tree

__all__ = ["main"]


def main() -> int:
    """The worker: read one JSON job per line on the inherited stdin, grade it, answer one JSON line."""
    inp = os.fdopen(os.dup(0), "r", encoding="utf-8")
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")  # os.dup makes non-inheritable copies
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    become_subreaper()
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


if __name__ == "__main__":
    sys.exit(main())
