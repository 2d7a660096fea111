from hico.cli import main

raise SystemExit(main())
