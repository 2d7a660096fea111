import os
import sys

# hico.warm.DIR_ENV, spelled out: a cold start (the usual one) does not import hico.warm (~15 ms)
if os.environ.get("HICO_WARM_DIR"):  # under `python -m hico.warm`: fork from a warm server if one matches
    from hico.warm import run_job

    code = run_job(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)

from hico.cli import main  # noqa: E402

raise SystemExit(main())
