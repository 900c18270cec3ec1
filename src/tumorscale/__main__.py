from tumorscale.cli import app

app(prog_name="tumorscale")
