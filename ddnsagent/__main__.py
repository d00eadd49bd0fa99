from ddnsagent.cli import main

raise SystemExit(main())
