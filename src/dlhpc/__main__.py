from dlhpc.cli import main

raise SystemExit(main())
