from syncflow.cli import main

main()
