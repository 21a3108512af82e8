from samexp.export import main

main()
