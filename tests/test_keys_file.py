"""The keys file has one format: the host side (codegraph-auth-header, which
codegraph-switch and the runbook scripts use) reads it as the service does
(codegraph.auth.parse_keys_file). Both are fed the same files, the odd ones included."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import jinja2
import pytest

from codegraph.auth import PRIMARY, parse_keys_file

TOP = Path(__file__).resolve().parent.parent
TEMPLATE = TOP / "roles/codegraph/templates/codegraph-auth-header.j2"

FILES = {
    "plain": "CODEGRAPH_API_KEY=abc123\n",
    "export and double quotes": 'export CODEGRAPH_API_KEY="abc 123"\n',
    "single quotes, spaces around": "  CODEGRAPH_API_KEY = 'abc123'  \n",
    "CRLF line ends": "# keys\r\nCODEGRAPH_API_KEY=abc123\r\nOTHER=x\r\n",
    "comments and blanks": "# CODEGRAPH_API_KEY=commented\n\n\tCODEGRAPH_API_KEY=real\n",
    "the last line wins": "CODEGRAPH_API_KEY=old\nCODEGRAPH_API_KEY=new\n",
    "= and # inside the value": "CODEGRAPH_API_KEY=a=b#c\n",
    "beside the previous keys": (
        "CODEGRAPH_API_KEYS_PREVIOUS=old1,old2\nCODEGRAPH_API_KEY=current\n"
    ),
    "a longer name is another key": "CODEGRAPH_API_KEY_OLD=x\nCODEGRAPH_API_KEY=y\n",
    "no key": "OTHER=1\n",
    "a line without =": "CODEGRAPH_API_KEY\n",
    "empty": "",
}


@pytest.fixture(scope="module")
def auth_header(tmp_path_factory) -> Path:
    # a shell script, not HTML: nothing to escape
    script = jinja2.Environment(keep_trailing_newline=True, autoescape=False)  # noqa: S701
    script.filters["quote"] = shlex.quote
    text = script.from_string(TEMPLATE.read_text()).render(
        ansible_managed="test", _codegraph_config_dir="/nonexistent"
    )
    path = tmp_path_factory.mktemp("bin") / "codegraph-auth-header"
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("name", FILES)
def test_the_host_side_reads_the_keys_file_as_the_service_does(name, auth_header, tmp_path):
    keys_file = tmp_path / ".env"
    keys_file.write_text(FILES[name])
    expected = parse_keys_file(FILES[name]).get(PRIMARY, "")
    # bytes, not text: text mode would turn a stray \r\n into \n
    result = subprocess.run([str(auth_header), str(keys_file)], capture_output=True, check=False)
    if expected:
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"Authorization: Bearer {expected}\n".encode()
    else:
        assert result.returncode == 1 and b"no CODEGRAPH_API_KEY" in result.stderr


def test_an_unreadable_keys_file_is_a_clear_error(auth_header, tmp_path):
    result = subprocess.run(
        [str(auth_header), str(tmp_path / "missing")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and "cannot be read" in result.stderr
