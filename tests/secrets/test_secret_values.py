"""Where secret values come from (a file, a mapping, the environment) and how they are masked:
durableflow.secrets on its own, without an engine."""

from __future__ import annotations

import json
import logging
import os

import pytest

from durableflow.errors import NodeError, SecretNotFound, SecretsFileError, ValidationError
from durableflow.model import NodeDef, freeze
from durableflow.secrets import MASK, Redactor, Secrets, open_body, ref_problems, resolve, secret


# --- the file -------------------------------------------------------------------------------

def test_env_file_lines_comments_export_and_quotes(write_secrets):
    path = write_secrets(
        "# the API\n"
        "\n"
        "API_TOKEN=abc=def#not-a-comment\n"
        "export DB_PASSWORD = 'p a s s'  \n"
        'MULTI="line one\\nline \\"two\\""\n'
        "EMPTY=\n"
        "_x9='$HOME stays as written'\n")
    values = Secrets(path, environ={})
    assert values.lookup("API_TOKEN") == "abc=def#not-a-comment"
    assert values.lookup("DB_PASSWORD") == "p a s s"
    assert values.lookup("MULTI") == 'line one\nline "two"'
    assert values.lookup("EMPTY") == ""
    assert values.lookup("_x9") == "$HOME stays as written"
    assert values.lookup("MISSING") is None


def test_json_file_is_an_object_of_names_to_text(write_secrets):
    path = write_secrets(json.dumps({"API_TOKEN": "t0k", "PEM": "-----BEGIN-----\nAAAA\n"}), "s.txt")
    values = Secrets(path, environ={})
    assert values.lookup("API_TOKEN") == "t0k"
    assert values.lookup("PEM") == "-----BEGIN-----\nAAAA\n"
    with pytest.raises(SecretsFileError, match=r"s\.json: not valid JSON"):
        Secrets(write_secrets("API_TOKEN=t0k\n", "s.json"))    # .json is read as JSON


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_file_others_can_read_is_refused_naming_file_and_mode(write_secrets, mode):
    path = write_secrets("API_TOKEN=hunter2-value\n", mode=mode)
    with pytest.raises(SecretsFileError) as caught:
        Secrets(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and f"mode {mode:04o}" in message
    assert "hunter2-value" not in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(write_secrets, mode):
    assert Secrets(write_secrets("A=1\n", mode=mode), environ={}).lookup("A") == "1"


@pytest.mark.parametrize("text, expected", [
    ("A=1\nthis line has no equals sign hunter2-value\n", "line 2: expected NAME=value"),
    ("A=1\n9LIVES=hunter2-value\n", "line 2: '9LIVES' is not a secret name"),
    ("A=hunter2-value\nA=other\n", "line 2: A is already set on line 1"),
    ("A='hunter2-value\n", "line 1: the value of A opens a ' quote it does not close"),
    ('{"A": 12}', "the value of A must be text, not int"),
    ('{"A": "hunter2-value",}', "not valid JSON (line 1 column"),
    ('{"bad name": "hunter2-value"}', "'bad name' is not a secret name"),
    ('["hunter2-value"]', "must hold one JSON object of names to text"),
])
def test_a_malformed_file_is_refused_with_its_line_and_never_a_value(write_secrets, text, expected):
    path = write_secrets(text)
    with pytest.raises(SecretsFileError) as caught:
        Secrets(path)
    message = str(caught.value)
    assert message.startswith(f"secrets file {path}")
    assert expected in message
    assert "hunter2-value" not in message and "\n" not in message


def test_a_missing_file_or_a_folder_is_refused(tmp_path):
    with pytest.raises(SecretsFileError, match="no such file"):
        Secrets(tmp_path / "absent.env")
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretsFileError, match="not a regular file"):
        Secrets(folder)


def test_the_file_wins_over_the_environment_which_fills_in_the_rest(write_secrets):
    values = Secrets(write_secrets("SHARED=from-file\n"), environ={"SHARED": "from-env", "ONLY_ENV": "e"})
    assert values.lookup("SHARED") == "from-file"
    assert values.lookup("ONLY_ENV") == "e"


def test_a_changed_file_is_read_again_and_a_broken_one_fails_the_lookup(write_secrets):
    path = write_secrets("A=old\n")
    values = Secrets(path, environ={})
    assert values.lookup("A") == "old"
    path.write_text("A=new-and-longer\n")
    assert values.lookup("A") == "new-and-longer"
    os.chmod(path, 0o644)
    with pytest.raises(SecretsFileError, match="mode 0644"):
        values.lookup("A")


def test_a_mapping_is_checked_like_a_file():
    assert Secrets({"A": "1"}, environ={}).lookup("A") == "1"
    with pytest.raises(SecretsFileError, match="the value of A must be text, not int"):
        Secrets({"A": 1})
    with pytest.raises(SecretsFileError, match="'a-b' is not a secret name"):
        Secrets({"a-b": "x"})
    with pytest.raises(SecretsFileError, match="a file path or a mapping"):
        Secrets(42)


# --- references -----------------------------------------------------------------------------

def test_secret_builds_a_reference_and_refuses_a_bad_name():
    assert secret("API_TOKEN") == {"$secret": "API_TOKEN"}
    with pytest.raises(ValidationError, match="is not a name"):
        secret("api token")


def test_ref_problems_name_the_path_of_each_bad_reference():
    value = {"ok": {"$secret": "A"}, "list": [1, {"$secret": "bad name"}],
             "deep": {"x": {"$secret": "B", "default": "d"}}, "kind": {"$secret": 7}}
    assert ref_problems(value, "inputs") == [
        ("inputs.list[1]", "secret name 'bad name' is not a name (letters, digits and '_', not starting with a digit)"),
        ("inputs.deep.x", '{"$secret": NAME} takes no other key (found \'default\')'),
        ("inputs.kind", "secret name int is not a name (letters, digits and '_', not starting with a digit)"),
    ]
    assert ref_problems({"a": [{"b": "plain"}]}) == []


def test_resolve_replaces_references_and_copies_only_what_holds_one():
    untouched = {"n": 1}
    value = {"token": {"$secret": "T"}, "list": ["x", {"$secret": "T"}], "same": untouched}
    used: dict[str, str] = {}
    got = resolve(value, {"T": "tv"}.get, used)
    assert got == {"token": "tv", "list": ["x", "tv"], "same": {"n": 1}}
    assert got["same"] is untouched and value["token"] == {"$secret": "T"}
    assert used == {"T": "tv"}
    plain = {"a": [1, {"b": 2}]}
    assert resolve(plain, {}.get, {}) is plain


def test_resolve_names_a_missing_secret_and_where_it_looked():
    with pytest.raises(SecretNotFound) as caught:
        resolve({"a": {"$secret": "NOPE"}}, {}.get, {}, where="secrets file /x and the environment")
    assert str(caught.value) == "secret 'NOPE' not found in secrets file /x and the environment"
    assert caught.value.error_type == "SecretNotFound" and caught.value.retryable is False


def test_open_body_resolves_input_inputs_vars_env_and_command_and_keeps_the_originals():
    node = NodeDef("n", "Shell", command=freeze(["curl", {"$secret": "T"}]),
                   env=freeze({"TOKEN": {"$secret": "T"}, "PLAIN": "p"}))
    given_vars = {"v": {"$secret": "T"}, "n": 1}
    body = open_body(Secrets({"T": "tv"}, environ={}), node, {"i": {"$secret": "T"}},
                     {"up": {"$secret": "T"}}, given_vars)
    assert (body.input, body.inputs, body.vars) == ({"i": "tv"}, {"up": "tv"}, {"v": "tv", "n": 1})
    assert body.node.command == ("curl", "tv") and dict(body.node.env) == {"TOKEN": "tv", "PLAIN": "p"}
    assert node.command == ("curl", {"$secret": "T"}) and given_vars["v"] == {"$secret": "T"}
    # What the body left as shown keeps its reference; what it changed or copied is masked.
    body.vars["n"] = 2
    body.vars["copy"] = "token is tv"
    assert body.stored_vars(body.vars) == {"v": {"$secret": "T"}, "n": 2, "copy": f"token is {MASK}"}


def test_open_body_without_references_changes_nothing_and_masks_nothing():
    node = NodeDef("n", "Python", script="output = 1")
    given_vars = {"a": [1]}
    body = open_body(Secrets(environ={}), node, {"x": 1}, {}, given_vars)
    assert body.node is node and not body.redact
    assert body.vars == given_vars and body.vars is not given_vars   # the body gets its own copy
    assert body.log("n") is None


def test_open_body_names_the_node_and_a_broken_file(write_secrets):
    path = write_secrets("T=1\n")
    values = Secrets(path, environ={})
    node = NodeDef("fetch", "Shell", command=("true",), env=freeze({"X": {"$secret": "GONE"}}))
    with pytest.raises(SecretNotFound, match=r"^node 'fetch': secret 'GONE' not found in secrets file "):
        open_body(values, node, None, {}, None)
    os.chmod(path, 0o644)
    with pytest.raises(NodeError, match=r"^node 'fetch': secrets file .* has mode 0644") as caught:
        open_body(values, node, None, {}, None)
    assert caught.value.error_type == "SecretsFileError"


# --- masking --------------------------------------------------------------------------------

def test_redactor_masks_strings_keys_and_numbers_in_values():
    redact = Redactor(["s3cr3t", "424242"])
    assert redact.value({"a": "x s3cr3t y", "s3cr3t": [1, "s3cr3ts3cr3t"], "n": 424242, "f": 1.5,
                         "b": True, "none": None}) == {
        "a": f"x {MASK} y", MASK: [1, MASK * 2], "n": MASK, "f": 1.5, "b": True, "none": None}


def test_redactor_masks_the_spellings_the_engine_makes_of_a_value():
    value = 'pä\tss "w"\\rd\x1b'
    redact = Redactor([value])
    assert redact.text(json.dumps({"v": value})) == '{"v": "***"}'                     # ASCII escapes
    assert redact.text(json.dumps({"v": value}, ensure_ascii=False)) == '{"v": "***"}'
    assert redact.text("error: " + " ".join(value.split())) == "error: ***"           # one line
    assert redact.text("error: pä ss \"w\"\\rd\\x1b") == "error: ***"                 # escaped controls


def test_redactor_masks_each_long_line_of_a_multi_line_value():
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nshort\n-----END KEY-----\n"
    redact = Redactor([pem])
    assert redact.text("stderr: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC") == f"stderr: {MASK}"
    assert redact.text(pem) == MASK
    assert redact.text("short") == "short"     # too short a piece to mask on its own


def test_an_empty_value_masks_nothing():
    assert not Redactor([""])
    assert Redactor([""]).text("anything") == "anything"


def test_the_masked_log_formats_arguments_and_tracebacks_before_masking(caplog):
    log = Redactor(["s3cr3t"]).logger(logging.getLogger("durableflow.node.t"))
    caplog.set_level(logging.DEBUG, logger="durableflow.node.t")
    log.info("token %s and %d", "s3cr3t", 7)
    try:
        raise ValueError("bad s3cr3t")
    except ValueError:
        log.exception("failed with %r", "s3cr3t")
    log.debug("no args: s3cr3t")
    texts = [record.getMessage() for record in caplog.records]
    assert texts[0] == f"token {MASK} and 7"
    assert texts[1].startswith(f"failed with '{MASK}'\nTraceback") and f"ValueError: bad {MASK}" in texts[1]
    assert texts[2] == f"no args: {MASK}"
    assert all("s3cr3t" not in text for text in texts)
    assert all(record.exc_info is None for record in caplog.records)
