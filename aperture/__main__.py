from aperture.cli import main

main(prog_name="aperture")
