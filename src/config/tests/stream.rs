//! The user data stream and the exchange check.

use super::*;

#[test]
fn the_stream_connects_to_mexc_by_default_and_never_to_mexc_for_another_exchange() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.mexc.ws_url.as_deref(), Some("wss://wbs-api.mexc.com/ws"));
    assert_eq!(s.mexc.stream_poll, Duration::from_secs(60));
    assert_eq!(s.mexc.stream_silence, Duration::from_secs(45));
    assert_eq!(s.mexc.exchange_check, Duration::from_secs(300));
    assert!(!s.mexc.cancel_orphans);
    // MEXC's own base URL, spelt with a slash, is still MEXC.
    let s = settings(&[("MEXC_BASE_URL", "https://api.mexc.com/")]).unwrap();
    assert_eq!(s.mexc.ws_url.as_deref(), Some("wss://wbs-api.mexc.com/ws"));
    // A key made at another base URL means nothing at MEXC's websocket.
    let s = settings(&[("MEXC_BASE_URL", "http://127.0.0.1:4100")]).unwrap();
    assert_eq!(s.mexc.ws_url, None);
    let s = settings(&[
        ("MEXC_BASE_URL", "http://127.0.0.1:4100"),
        ("MEXC_WS_URL", " ws://127.0.0.1:4101/ws "),
    ])
    .unwrap();
    assert_eq!(s.mexc.ws_url.as_deref(), Some("ws://127.0.0.1:4101/ws"));
    let s = settings(&[("LIVE_USER_STREAM", "false")]).unwrap();
    assert_eq!(s.mexc.ws_url, None);
}

#[test]
fn the_stream_url_is_wss_or_loopback_ws_without_a_query() {
    for good in [
        "wss://wbs-api.mexc.com/ws",
        "wss://example.com",
        "ws://localhost:9001/ws",
        "ws://[::1]:9001",
    ] {
        assert!(
            settings(&[("MEXC_WS_URL", good)]).is_ok(),
            "{good} should be accepted"
        );
    }
    for (bad, why) in [
        ("ws://wbs-api.mexc.com/ws", "plain ws leaves this machine"),
        ("https://wbs-api.mexc.com/ws", "the scheme is \"https\""),
        (
            "wss://wbs-api.mexc.com/ws?listenKey=abc",
            "query or fragment",
        ),
        ("wss://user:pw@wbs-api.mexc.com/ws", "credentials"),
        ("wss://wbs-api.mexc.com:0/ws", "port 0"),
        ("not a url", "relative URL"),
    ] {
        let err = settings(&[("MEXC_WS_URL", bad)]).unwrap_err().to_string();
        assert!(err.contains("MEXC_WS_URL="), "{bad}: {err}");
        assert!(err.contains(why), "{bad}: {why} missing from {err}");
        assert!(!err.contains("pw@"), "credentials shown: {err}");
    }
    // Checked even when the stream is off, like every setting.
    assert!(settings(&[("LIVE_USER_STREAM", "false"), ("MEXC_WS_URL", "ftp://x")]).is_err());
}

#[test]
fn stream_and_check_intervals_are_range_checked() {
    for (name, bad) in [
        ("LIVE_STREAM_POLL_SECS", "0"),
        ("LIVE_STREAM_POLL_SECS", "3601"),
        ("LIVE_STREAM_POLL_SECS", "-1"),
        ("LIVE_STREAM_POLL_SECS", "1e3"),
        ("LIVE_STREAM_SILENCE_SECS", "1"),
        ("LIVE_STREAM_SILENCE_SECS", "301"),
        ("LIVE_EXCHANGE_CHECK_SECS", "4"),
        ("LIVE_EXCHANGE_CHECK_SECS", "86401"),
        ("LIVE_EXCHANGE_CHECK_SECS", "18446744073709551616"),
        ("LIVE_USER_STREAM", "maybe"),
        ("LIVE_CANCEL_ORPHANS", "2"),
    ] {
        let err = settings(&[(name, bad)]).unwrap_err().to_string();
        assert!(err.contains(&format!("{name}=")), "{name}={bad}: {err}");
    }
    let s = settings(&[
        ("LIVE_STREAM_POLL_SECS", "1"),
        ("LIVE_STREAM_SILENCE_SECS", "300"),
        ("LIVE_EXCHANGE_CHECK_SECS", "5"),
        ("LIVE_CANCEL_ORPHANS", "true"),
    ])
    .unwrap();
    assert_eq!(s.mexc.stream_poll, Duration::from_secs(1));
    assert_eq!(s.mexc.stream_silence, Duration::from_secs(300));
    assert_eq!(s.mexc.exchange_check, Duration::from_secs(5));
    assert!(s.mexc.cancel_orphans);
}
