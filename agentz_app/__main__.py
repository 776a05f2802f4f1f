from agentz_app.cli import main

main()
