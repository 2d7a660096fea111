import os
import sys

if os.environ.get("HICO_WARM_DIR"):  # under `python -m hico.warm`: fork from a warm server if one matches
    from hico.warm import run_job

    code = run_job(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)

from hico.cli import main  # noqa: E402

raise SystemExit(main())
