"""Unit tests for turning a solution into a learner stub."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labs.course.learner import ANSWER_TAG, learner_version, strip_solutions, topic_of


def test_top_level_region_becomes_todo_assignments():
    """Names bound at top level become `name = TODO` (functions keep their signature), code
    outside the region stays."""
    src = "x = 1\n### BEGIN SOLUTION\nanswer = 6 * 7\ndef helper():\n    pass\n### END SOLUTION\nprint(x)"
    out, is_answer = strip_solutions(src, "code")
    assert is_answer
    assert "answer = TODO" in out and "def helper():\n" in out and "    TODO()" in out
    assert "6 * 7" not in out and out.startswith("x = 1\n") and out.endswith("print(x)")


def test_region_inside_a_function_becomes_a_todo_call():
    """A function body region keeps the signature and raises NotAttempted when called."""
    src = "def transfer(conn, a, b, amount):\n    ### BEGIN SOLUTION\n    conn.execute('x')\n    ### END SOLUTION\n"
    out, _ = strip_solutions(src, "code")
    assert "def transfer(conn, a, b, amount):\n" in out and "    TODO()" in out
    assert "conn.execute" not in out


def test_sql_region_becomes_a_placeholder_comment():
    """SQL inside a string keeps its indentation and becomes a comment."""
    src = 'q = """\n  -- BEGIN SOLUTION\n  SELECT 1\n  -- END SOLUTION\n"""'
    out, is_answer = strip_solutions(src, "code")
    assert is_answer and "SELECT 1" not in out and "  -- YOUR SQL HERE\n" in out


def test_markdown_region_and_outputs_are_cleared():
    """Markdown answers are blanked; outputs and counts are removed; answers are tagged."""
    nb = new_notebook(cells=[
        new_markdown_cell("Why? <!-- BEGIN SOLUTION -->Because.<!-- END SOLUTION -->"),
        new_code_cell("### BEGIN SOLUTION\na = 1\n### END SOLUTION", execution_count=3,
                      outputs=[nbformat.v4.new_output("stream", text="hi")]),
        new_code_cell("print('no answer here')"),
    ])
    learner = learner_version(nb)
    assert "Because" not in learner.cells[0].source
    assert learner.cells[1].outputs == [] and learner.cells[1].execution_count is None
    assert ANSWER_TAG in learner.cells[1].metadata["tags"]
    assert "tags" not in learner.cells[2].metadata
    assert nb.cells[1].outputs, "the solution itself is not modified"


def test_topic_comes_from_the_notebook_name():
    assert topic_of("notebooks/02_race_conditions.ipynb") == "race_conditions"


def test_a_function_answer_keeps_its_signature_and_docstring():
    """A whole function in a region becomes its signature, docstring and TODO() — no decorator."""
    from labs.course.learner import strip_solutions

    source = ('import psycopg\n\n### BEGIN SOLUTION\n@retry\ndef run_ddl(conn, statement,\n'
              '            attempts=30):\n    """Run one DDL statement."""\n    return 1\n'
              'LIMIT = 5\n### END SOLUTION\n')
    stub, is_answer = strip_solutions(source, "code")
    assert is_answer
    assert 'def run_ddl(conn, statement,\n            attempts=30):\n    """Run one DDL statement."""' in stub
    assert "    TODO()" in stub and "LIMIT = TODO" in stub
    assert "@retry" not in stub and "return 1" not in stub


def test_reference_answer_is_the_solution_cells_of_that_check():
    """labs.solution() shows the reference cells that bind the check's arguments, markers removed."""
    from labs.course.learner import reference_answer

    text = reference_answer("start_here.q2")
    assert "collisions_sql" in text and "lower(" in text
    assert "BEGIN SOLUTION" not in text and "newest_sql" not in text
