from venuecam.cli.main import main

raise SystemExit(main())
