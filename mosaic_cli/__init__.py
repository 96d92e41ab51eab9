"""The `mosaic` command: thin. It checks the input, starts a flow and prints the result; the work is in flows/."""
