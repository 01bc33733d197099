from rlli.commands.main import main

raise SystemExit(main())
