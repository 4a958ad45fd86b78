"""Command groups of `gomail`, one module each, registered in gomailpy_cli.main with
`cli.add_command`.

A command module imports what its commands run inside their bodies, so that `gomail --help` and
every other command load none of it (and none of its optional dependencies).
"""
