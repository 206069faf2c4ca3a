from durableflow.cli import main

main()
