use super::*;

fn body(code: i64) -> String {
    format!(r#"{{"code":{code},"msg":"text {code}"}}"#)
}

fn kind_of(code: i64) -> RejectKind {
    match classify(400, None, &body(code)) {
        MexcError::Rejected { code: c, msg, kind } => {
            assert_eq!(c, code);
            assert_eq!(msg, format!("text {code}"));
            kind
        }
        other => panic!("{code} is not a rejection: {other:?}"),
    }
}

#[test]
fn every_listed_business_code_is_a_rejection_with_its_meaning() {
    let expected = [
        (10101, RejectKind::InsufficientBalance),
        (30002, RejectKind::BelowMinimumAmount),
        (30003, RejectKind::AboveMaximumAmount),
        (30004, RejectKind::InsufficientPosition),
        (30005, RejectKind::Oversold),
        (30010, RejectKind::NoValidPrice),
        (30016, RejectKind::TradingDisabled),
        (30019, RejectKind::MarketOrdersDisabled),
        (30020, RejectKind::NoSymbolPermission),
        (30027, RejectKind::PositionLimitReached),
        (30028, RejectKind::SellingSuspended),
        (30029, RejectKind::OrderLimitReached),
        (30051, RejectKind::Refused),
        (10007, RejectKind::SymbolNotSupported),
        (10096, RejectKind::TooManyDecimals),
        (10098, RejectKind::RiskControl),
        // Further documented codes that refuse an order outright.
        (30000, RejectKind::TradingDisabled),
        (30001, RejectKind::SideNotAllowed),
        (30014, RejectKind::SymbolNotSupported),
        (30018, RejectKind::MarketOrdersDisabled),
        (30021, RejectKind::SymbolNotSupported),
        (30032, RejectKind::PositionLimitReached),
        (30041, RejectKind::OrderTypeNotAllowed),
        (10095, RejectKind::InvalidAmount),
        (10097, RejectKind::InvalidAmount),
        (10102, RejectKind::InvalidAmount),
        (70011, RejectKind::NoSymbolPermission),
        (700004, RejectKind::InvalidParameter),
        (33333, RejectKind::InvalidParameter),
        (44444, RejectKind::InvalidParameter),
        (730001, RejectKind::SymbolNotSupported),
    ];
    for (code, kind) in expected {
        assert_eq!(kind_of(code), kind, "code {code}");
        assert!(!kind.meaning().is_empty());
    }
    let shown = classify(400, None, &body(10101)).to_string();
    assert_eq!(
        shown,
        "MEXC rejected the request: insufficient balance (code 10101: text 10101)"
    );
}

#[test]
fn unknown_order_codes_are_not_proof_of_absence_but_their_own_kind() {
    for code in [-2011, -2013] {
        assert_eq!(
            classify(400, None, &body(code)),
            MexcError::UnknownOrder {
                code,
                msg: format!("text {code}")
            }
        );
    }
}

#[test]
fn signature_and_key_errors_are_credentials_problems() {
    for code in [
        602, 700002, 700005, 700006, 700007, 700008, 700001, 10072, 401, 403,
    ] {
        let err = classify(400, None, &body(code));
        assert!(
            matches!(err, MexcError::Signature { code: c, .. } if c == code),
            "{code}: {err:?}"
        );
        assert!(err.is_credentials_problem());
        assert!(err.certainly_not_applied());
    }
    // A 403 from the firewall has no JSON at all.
    let blocked = classify(403, None, "<html>Access Denied</html>");
    assert!(
        matches!(&blocked, MexcError::Signature { code: 403, msg } if msg.contains("Access Denied")),
        "{blocked:?}"
    );
    assert!(matches!(
        classify(401, None, &body(700007)),
        MexcError::Signature { code: 700007, .. }
    ));
}

#[test]
fn a_timestamp_outside_the_window_is_its_own_kind() {
    let err = classify(400, None, &body(700003));
    assert_eq!(
        err,
        MexcError::TimeOutsideWindow {
            msg: "text 700003".into()
        }
    );
    assert_eq!(err.code(), Some(700003));
}

#[test]
fn rate_limits_carry_retry_after() {
    assert_eq!(
        classify(429, Some("7"), ""),
        MexcError::RateLimited {
            retry_after: Duration::from_secs(7),
            banned: false
        }
    );
    assert_eq!(
        classify(418, Some(" 120 "), &body(418)),
        MexcError::RateLimited {
            retry_after: Duration::from_secs(120),
            banned: true
        }
    );
    assert_eq!(
        classify(429, None, ""),
        MexcError::RateLimited {
            retry_after: DEFAULT_RETRY_AFTER,
            banned: false
        }
    );
    assert_eq!(
        classify(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), ""),
        MexcError::RateLimited {
            retry_after: DEFAULT_RETRY_AFTER,
            banned: false
        }
    );
    assert!(matches!(
        classify(400, None, &body(429)),
        MexcError::RateLimited { banned: false, .. }
    ));
}

#[test]
fn server_errors_unreadable_answers_and_unmapped_codes_are_unknown() {
    for (status, text) in [
        (500, body(10101)),
        (502, "Bad Gateway".to_owned()),
        (503, body(503)),
        (504, String::new()),
        (400, "not json".to_owned()),
        (400, r#"{"msg":"no code"}"#.to_owned()),
        (400, body(20002)),
        (404, "<html>Not Found</html>".to_owned()),
    ] {
        let err = classify(status, None, &text);
        assert!(
            matches!(err, MexcError::Unknown { .. }),
            "{status} {text}: {err:?}"
        );
        assert!(!err.certainly_not_applied());
    }
    let long = "x".repeat(1000);
    let MexcError::Unknown { reason } = classify(500, None, &long) else {
        panic!("not unknown")
    };
    assert!(reason.len() < 300, "{reason}");
}

#[test]
fn codes_may_come_as_text() {
    assert!(matches!(
        classify(400, None, r#"{"code":"30002","msg":"min"}"#),
        MexcError::Rejected {
            code: 30002,
            kind: RejectKind::BelowMinimumAmount,
            ..
        }
    ));
}

#[test]
fn only_unknown_leaves_the_outcome_open() {
    let settled = [
        MexcError::NoCredentials,
        MexcError::ClockUnavailable {
            reason: "timed out".into(),
        },
        classify(400, None, &body(10101)),
        classify(400, None, &body(-2013)),
        classify(400, None, &body(700002)),
        classify(400, None, &body(700003)),
        classify(429, Some("1"), ""),
    ];
    for err in settled {
        assert!(err.certainly_not_applied(), "{err:?}");
    }
    assert!(!classify(503, None, "").certainly_not_applied());
}
