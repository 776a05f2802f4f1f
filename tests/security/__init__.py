"""Security tests. Threat model: who can reach Agent-Z, what they could try, and which test stops it.

Attackers considered: anyone on the internet who can POST to the webhook URL;
anyone who can open issues or comment (titles, bodies, comments are theirs); bots
and Agent-Z's own App account (loops); the coding agents themselves (untrusted
output, arbitrary code in their subprocess); and anyone who reads our logs.

1. Forged webhooks (no, wrong, truncated, extended, ``sha1=``/``SHA256=`` prefixed,
   whitespace-tricked or non-ASCII signatures; a signature over another body or
   with another or an empty secret) are refused with 401 and never stored:
   ``test_webhook_forgery.py::test_altered_signatures_are_refused_and_nothing_is_stored``,
   ``::test_signed_header_must_match_the_exact_bytes_received``,
   ``::test_non_ascii_signature_bytes_are_refused_not_a_server_error``,
   ``::test_receiver_refuses_to_start_without_a_webhook_secret``;
   ``tests/unit/test_signatures.py``; ``tests/integration/test_receiver.py``;
   fuzzed in ``tests/integration/test_fuzz_receiver.py::test_unverified_requests_are_refused_and_never_stored``.
2. Replayed deliveries (same id, same body, valid signature) are stored once and
   handled once, and cannot swap the stored payload:
   ``test_webhook_forgery.py::test_replayed_delivery_is_stored_once_and_handled_once``,
   ``::test_replayed_delivery_id_cannot_replace_the_stored_payload``.
3. Malformed or hostile payloads (garbage bytes, non-UTF-8, deep nesting, huge
   bodies, odd headers, lone surrogates) never cause a 500 or crash the inbox; a
   handler failure is recorded on the delivery:
   ``tests/integration/test_fuzz_receiver.py``.
4. Commands from people without write access, from bots, or from Agent-Z's own
   App (bot account or ``performed_via_github_app``) start nothing:
   ``test_untrusted_commands.py``; ``tests/integration/test_triggers.py``;
   ``tests/unit/test_commands.py``.
5. Branch-name injection through issue titles (``../``, leading ``-``,
   ``refs/heads/``, ``@{``, ``~^:?*[\\``, control characters, unicode, very long):
   ``git check-ref-format --branch`` accepts every derived name and it stays under
   ``agent-z/issue-<n>-``: ``test_branch_injection.py``; ``tests/unit/test_branch_names.py``.
6. Secrets in logs (webhook secret, App private key, App JWT, installation tokens,
   database password), including error bodies that echo credentials:
   ``test_secrets_in_logs.py::test_secrets_never_appear_in_logs``.
7. Secrets in agent subprocesses: no secret variable or value (App key inline or
   from its file, webhook secret, database URL, GitHub tokens) in the environment,
   arguments, stdin or private home of any backend:
   ``test_agent_secrets.py``; ``tests/unit/test_agent_env.py``.
8. Credentials at rest: ``agentz setup`` writes ``.env`` and the App key with mode
   0600: ``tests/integration/test_setup.py::test_manifest_flow_writes_the_app_credentials_to_env_and_key_file``.
9. Untrusted agent output (random text, near-miss or deeply nested JSON) yields a
   valid model or ``InvalidAgentOutput``, and prose ("LGTM") never approves:
   ``tests/integration/test_fuzz_agent_output.py``; ``tests/unit/test_role_parsing.py``.
10. Hostile issue bodies cannot crash or stall dependency parsing (huge numbers,
    long runs of name characters) or invent dependencies:
    ``tests/integration/test_fuzz_dependencies.py``; ``tests/unit/test_dependency_parsing.py``.
"""
