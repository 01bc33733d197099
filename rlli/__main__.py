from rlli.cli import main

raise SystemExit(main())
