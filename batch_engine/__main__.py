from batch_engine.cli import main

raise SystemExit(main())
