from mpsrnn.cli import main

main()
