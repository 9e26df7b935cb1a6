"""Variables that share a name with a role of prometheus-community's prometheus.prometheus
collection (its prometheus, alertmanager and node_exporter roles): an inventory written
for that collection reaches ours through those names, so each one we share must mean
what it means there. Any other name of theirs stays out of our roles."""

from __future__ import annotations

from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
# Every variable of those roles' defaults, at prometheus-community/ansible 301b83bf
# (2026-07-24).
THEIRS = {
    "prometheus_agent_mode",
    "prometheus_alert_relabel_configs",
    "prometheus_alert_rules",
    "prometheus_alert_rules_files",
    "prometheus_alertmanager_config",
    "prometheus_binary_install_dir",
    "prometheus_binary_url",
    "prometheus_checksums_url",
    "prometheus_config_dir",
    "prometheus_config_file",
    "prometheus_config_flags_extra",
    "prometheus_db_dir",
    "prometheus_external_labels",
    "prometheus_global",
    "prometheus_local_cache_path",
    "prometheus_metrics_path",
    "prometheus_read_only_dirs",
    "prometheus_remote_read",
    "prometheus_remote_write",
    "prometheus_scrape_config_files",
    "prometheus_scrape_configs",
    "prometheus_static_targets_files",
    "prometheus_stop_timeout",
    "prometheus_storage_retention",
    "prometheus_storage_retention_size",
    "prometheus_system_group",
    "prometheus_system_user",
    "prometheus_targets",
    "prometheus_version",
    "prometheus_web_config",
    "prometheus_web_external_url",
    "prometheus_web_listen_address",
    "alertmanager_amtool_config_alertmanager_url",
    "alertmanager_amtool_config_file",
    "alertmanager_amtool_config_output",
    "alertmanager_binary_install_dir",
    "alertmanager_binary_url",
    "alertmanager_checksums_url",
    "alertmanager_cluster",
    "alertmanager_config_dir",
    "alertmanager_config_file",
    "alertmanager_config_flags_extra",
    "alertmanager_db_dir",
    "alertmanager_hipchat_api_url",
    "alertmanager_hipchat_auth_token",
    "alertmanager_http_config",
    "alertmanager_inhibit_rules",
    "alertmanager_local_cache_path",
    "alertmanager_mask_diff",
    "alertmanager_opsgenie_api_key",
    "alertmanager_opsgenie_api_url",
    "alertmanager_pagerduty_url",
    "alertmanager_receivers",
    "alertmanager_resolve_timeout",
    "alertmanager_route",
    "alertmanager_slack_api_url",
    "alertmanager_smtp",
    "alertmanager_system_group",
    "alertmanager_system_user",
    "alertmanager_template_files",
    "alertmanager_time_intervals",
    "alertmanager_version",
    "alertmanager_victorops_api_key",
    "alertmanager_victorops_api_url",
    "alertmanager_web_config",
    "alertmanager_web_external_url",
    "alertmanager_web_listen_address",
    "alertmanager_wechat_corp_id",
    "alertmanager_wechat_secret",
    "alertmanager_wechat_url",
    "node_exporter_basic_auth_users",
    "node_exporter_binary_install_dir",
    "node_exporter_binary_url",
    "node_exporter_checksums_url",
    "node_exporter_config_dir",
    "node_exporter_disabled_collectors",
    "node_exporter_enabled_collectors",
    "node_exporter_http_server_config",
    "node_exporter_local_cache_path",
    "node_exporter_log_format",
    "node_exporter_log_level",
    "node_exporter_system_group",
    "node_exporter_system_user",
    "node_exporter_textfile_dir",
    "node_exporter_tls_server_config",
    "node_exporter_version",
    "node_exporter_web_disable_exporter_metrics",
    "node_exporter_web_listen_address",
    "node_exporter_web_telemetry_path",
}
# The names we share, each with the same meaning (and format) as theirs.
SAME_MEANING = {
    "prometheus_external_labels": "labels added to every series and alert leaving Prometheus",
    "prometheus_remote_write": "Prometheus' remote_write list, as Prometheus takes it",
    "alertmanager_receivers": "Alertmanager's receivers, as Alertmanager takes them",
    "alertmanager_route": "Alertmanager's routing tree, as Alertmanager takes it",
    "alertmanager_inhibit_rules": "Alertmanager's inhibit_rules, as Alertmanager takes them",
    "node_exporter_textfile_dir": "the folder of node_exporter's textfile collector",
}


def our_variables() -> set[str]:
    names: set[str] = set()
    for role in (TOP / "roles").iterdir():
        defaults = role / "defaults/main.yml"
        if defaults.is_file():
            names |= set(yaml.safe_load(defaults.read_text()) or {})
        specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]
        for entry in specs.values():
            names |= set(entry.get("options") or {})
    return names


def test_only_names_of_the_same_meaning_are_shared_with_prometheus_prometheus():
    shared = our_variables() & THEIRS
    assert shared == set(SAME_MEANING), (
        f"shared with prometheus.prometheus but not known to mean the same: "
        f"{sorted(shared - set(SAME_MEANING))}; rename ours, or match theirs and list it"
    )
