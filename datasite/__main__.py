from datasite.cli import app

app()
