"""One module per `esper` subcommand; each defines `register(subparsers)`."""
