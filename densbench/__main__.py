from densbench.cli import main

raise SystemExit(main())
