"""The `tilecc` command line: a module per subcommand, each `add_parser` + `drive`."""
