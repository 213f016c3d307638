"""The `modeldeploy` command line, one small package above the server and the operator.

It only parses arguments and hands each subcommand to the package that does the work:
`serve`, `fetch` and `profile` to modeldeploy_serving, `operator` to modeldeploy_operator
(installed with the [operator] extra). Living above both keeps the server free of any
import of the operator, which an import-linter contract checks.
"""
