"""Loaded by schemathesis in the security suite (SCHEMATHESIS_HOOKS, set by
tests/tests/integration/api_fuzzing.rs and so by `make security`).

On CPython 3.11 (the interpreter here), `ast.parse` called deep in a recursion can raise
`SystemError: AST constructor recursion depth mismatch`. Hypothesis calls it to describe a lambda
in a strategy's repr, which schemathesis does while it builds the recursive strategy of a
free-form JSON member; the fault then ends the run with an error that says nothing about the API
under test. The description is for display only, so a lambda that cannot be described that way is
shown as `lambda: <unknown>` (what Hypothesis itself shows when it cannot find the source), and the
test goes on.
"""

from hypothesis.internal import lambda_sources

_describe = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe(f)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources.lambda_description = _lambda_description
