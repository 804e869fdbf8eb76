from dlhpc.cli.main import main

raise SystemExit(main())
