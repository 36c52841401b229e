use super::*;
use proptest::prelude::*;

const FULL: &str = r#"{"update_state":"Available","available_updates":["1.21.0","1.20.1","1.20.0","1.19.5"],"chosen_update":{"arch":"x86_64","version":"1.21.0","variant":"aws-k8s-1.29"},"active_partition":{"image":{"arch":"x86_64","version":"1.20.0","variant":"aws-k8s-1.29"},"next_to_boot":true},"staging_partition":null,"most_recent_command":{"cmd_type":"refresh","cmd_status":"Success","timestamp":"2026-11-24T10:00:07.123456789Z","exit_status":0,"stderr":""}}"#;

#[test]
fn the_fact_sheet_example_parses() {
    let s = parse_update_status(FULL.as_bytes()).unwrap();
    assert_eq!(s.update_state, UpdateState::Available);
    assert_eq!(s.available_updates, ["1.21.0", "1.20.1", "1.20.0", "1.19.5"]);
    assert_eq!(s.chosen_version(), Some("1.21.0"));
    assert_eq!(s.next_to_boot_version(), Some("1.20.0"));
    assert_eq!(s.staged_version(), None);
    let cmd = s.most_recent_command.unwrap();
    assert_eq!(cmd.cmd_type, CommandType::Refresh);
    assert_eq!(cmd.cmd_status, CommandStatus::Success);
    assert_eq!(cmd.timestamp.as_str(), "2026-11-24T10:00:07.123456789Z");
    assert_eq!(cmd.exit_status, Some(0));
    assert_eq!(cmd.stderr.as_deref(), Some(""));
}

#[test]
fn a_status_created_by_a_refused_command_parses() {
    let body = r#"{"update_state":"Idle","available_updates":[],"chosen_update":null,"active_partition":{"image":{"arch":"x86_64","version":"1.20.0","variant":"aws-k8s-1.29"},"next_to_boot":true},"staging_partition":null,"most_recent_command":null}"#;
    let s = parse_update_status(body.as_bytes()).unwrap();
    assert_eq!(s.update_state, UpdateState::Idle);
    assert!(s.most_recent_command.is_none());
    assert!(s.last_command_timestamp().is_none());
}

#[test]
fn absent_and_null_optional_fields_are_not_errors() {
    let minimal = r#"{"update_state":"Ready"}"#;
    let s = parse_update_status(minimal.as_bytes()).unwrap();
    assert_eq!(s.update_state, UpdateState::Ready);
    assert!(s.available_updates.is_empty());
    assert!(s.active_partition.is_none() && s.staging_partition.is_none());
    let nulls = r#"{"update_state":"Idle","available_updates":null,"chosen_update":null,"active_partition":null,"staging_partition":null,"most_recent_command":{"cmd_type":"deactivate","cmd_status":"Failed","timestamp":"2026-11-24T10:00:07Z","exit_status":null,"stderr":null}}"#;
    let s = parse_update_status(nulls.as_bytes()).unwrap();
    let cmd = s.most_recent_command.unwrap();
    assert_eq!(cmd.cmd_type, CommandType::Deactivate);
    assert_eq!((cmd.exit_status, cmd.stderr), (None, None));
    let absent = r#"{"update_state":"Idle","most_recent_command":{"cmd_type":"prepare","cmd_status":"Success","timestamp":"2026-11-24T10:00:07.123Z"}}"#;
    assert!(parse_update_status(absent.as_bytes()).is_ok());
}

#[test]
fn exit_status_is_signed_32_bit() {
    let with = |n: &str| {
        format!(
            r#"{{"update_state":"Idle","most_recent_command":{{"cmd_type":"prepare","cmd_status":"Failed","timestamp":"2026-11-24T10:00:07Z","exit_status":{n},"stderr":"x"}}}}"#
        )
    };
    let s = parse_update_status(with("-9").as_bytes()).unwrap();
    assert_eq!(s.most_recent_command.unwrap().exit_status, Some(-9));
    let s = parse_update_status(with("2147483647").as_bytes()).unwrap();
    assert_eq!(s.most_recent_command.unwrap().exit_status, Some(i32::MAX));
    assert!(parse_update_status(with("2147483648").as_bytes()).is_err());
    assert!(parse_update_status(with("1.5").as_bytes()).is_err());
}

#[test]
fn unknown_enum_values_are_clear_errors() {
    let err = parse_update_status(br#"{"update_state":"Rebooting"}"#).unwrap_err();
    assert!(err.contains("unknown variant `Rebooting`"), "{err}");
    let err = parse_update_status(
        br#"{"update_state":"Idle","most_recent_command":{"cmd_type":"reboot","cmd_status":"Success","timestamp":"2026-11-24T10:00:07Z"}}"#,
    )
    .unwrap_err();
    assert!(err.contains("unknown variant `reboot`"), "{err}");
    let err = parse_update_status(
        br#"{"update_state":"Idle","most_recent_command":{"cmd_type":"refresh","cmd_status":"Done","timestamp":"2026-11-24T10:00:07Z"}}"#,
    )
    .unwrap_err();
    assert!(err.contains("unknown variant `Done`"), "{err}");
}

#[test]
fn timestamps_keep_their_fraction_digits_exactly() {
    for text in [
        "2026-11-24T10:00:07Z",
        "2026-11-24T10:00:07.120Z",
        "2026-11-24T10:00:07.123400Z",
        "2026-11-24T10:00:07.123456700Z",
    ] {
        let t = CommandTimestamp::parse(text).unwrap();
        assert_eq!(t.as_str(), text);
        assert_eq!(t.to_string(), text);
    }
    let a = CommandTimestamp::parse("2026-11-24T10:00:07.123456789Z").unwrap();
    let b = CommandTimestamp::parse("2026-11-24T10:00:07.123456788Z").unwrap();
    assert_ne!(a, b, "commands a nanosecond apart are told apart");
    let err = CommandTimestamp::parse("yesterday").unwrap_err();
    assert!(err.contains("not RFC 3339"), "{err}");
}

#[test]
fn a_staged_partition_that_boots_next_is_reported() {
    let body = r#"{"update_state":"Ready","available_updates":["1.21.0"],"chosen_update":null,"active_partition":{"image":{"arch":"x86_64","version":"1.20.0","variant":"v"},"next_to_boot":false},"staging_partition":{"image":{"arch":"x86_64","version":"1.21.0","variant":"v"},"next_to_boot":true},"most_recent_command":null}"#;
    let s = parse_update_status(body.as_bytes()).unwrap();
    assert_eq!(s.staged_version(), Some("1.21.0"));
    assert_eq!(s.next_to_boot_version(), Some("1.21.0"));
}

#[test]
fn os_info_parses_and_tolerates_extra_fields() {
    let body = r#"{"pretty_name":"Bottlerocket OS 1.20.0 (aws-k8s-1.29)","variant_id":"aws-k8s-1.29","version_id":"1.20.0","build_id":"abc1234","arch":"x86_64","extra":1}"#;
    let os = parse_os(body.as_bytes()).unwrap();
    assert_eq!(os.version_id, "1.20.0");
    assert_eq!(os.variant_id, "aws-k8s-1.29");
    assert_eq!(os.arch, "x86_64");
    assert_eq!(os.build_id.as_deref(), Some("abc1234"));
    let err = parse_os(br#"{"variant_id":"v","arch":"x"}"#).unwrap_err();
    assert!(err.contains("missing field `version_id`"), "{err}");
}

#[test]
fn partial_json_is_an_error_not_a_panic() {
    for cut in 0..FULL.len() {
        assert!(parse_update_status(&FULL.as_bytes()[..cut]).is_err());
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("Idle".to_owned()),
            Just("Staged".to_owned()),
            Just("refresh".to_owned()),
            Just("Failed".to_owned()),
            Just("2026-11-24T10:00:07.1Z".to_owned()),
            ".*",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("update_state".to_owned()),
            Just("available_updates".to_owned()),
            Just("chosen_update".to_owned()),
            Just("active_partition".to_owned()),
            Just("staging_partition".to_owned()),
            Just("most_recent_command".to_owned()),
            Just("image".to_owned()),
            Just("version".to_owned()),
            Just("next_to_boot".to_owned()),
            Just("cmd_type".to_owned()),
            Just("cmd_status".to_owned()),
            Just("timestamp".to_owned()),
            Just("exit_status".to_owned()),
            Just("version_id".to_owned()),
            "[a-z_]{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_update_status(&bytes);
        let _ = parse_os(&bytes);
    }

    #[test]
    fn arbitrary_json_values_never_panic(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = parse_update_status(&bytes);
        let _ = parse_os(&bytes);
    }

    #[test]
    fn truncated_or_mutated_real_status_never_panics(cut in 0..FULL.len(), at in 0..FULL.len(), byte in any::<u8>()) {
        let mut bytes = FULL.as_bytes().to_vec();
        bytes[at] = byte;
        let _ = parse_update_status(&bytes);
        let _ = parse_update_status(&FULL.as_bytes()[..cut]);
    }
}
