from styleclip.cli import main

main()
