from monoduty.cli import main

main()
