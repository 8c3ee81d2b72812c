use proptest::prelude::*;

use super::*;

/// Protobuf written by the fake exchange's encoder, from the `.proto`
/// field numbers alone (not with the structs under test).
type Frame = fake_mexc::ProtobufWriter;

/// MEXC's documented order push (`MXUSDT`, filled), with a client id.
fn documented_order() -> Vec<u8> {
    let body = Frame::default()
        .text(1, "C02__505979017439002624115")
        .text(2, "es1-abc")
        .text(3, "3.5121")
        .text(4, "1")
        .text(5, "0")
        .text(6, "3.6962")
        .int(7, 5)
        .int(8, 2)
        .text(10, "0")
        .text(11, "0")
        .text(12, "1")
        .text(13, "1")
        .text(14, "3.6962")
        .int(15, 2)
        .int(16, 1_736_417_034_259);
    Frame::default()
        .text(1, ORDERS_CHANNEL)
        .text(3, "MXUSDT")
        .int(6, 1_736_417_034_281)
        .bytes(304, &body.0)
        .0
}

/// MEXC's documented deal push.
fn documented_deal() -> Vec<u8> {
    let body = Frame::default()
        .text(1, "3.6962")
        .text(2, "1")
        .text(3, "3.6962")
        .int(4, 2)
        .text(7, "505979017439002624X1")
        .text(8, "es1-abc")
        .text(9, "C02__505979017439002624115")
        .text(10, "0.0003998377369698171")
        .text(11, "MX")
        .int(12, 1_736_417_034_280);
    Frame::default()
        .text(1, DEALS_CHANNEL)
        .text(3, "MXUSDT")
        .int(6, 1_736_417_034_332)
        .bytes(306, &body.0)
        .0
}

fn decimal(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[test]
fn the_documented_order_push_reads_as_a_lookup_would() {
    let Push::Order {
        client_order_id,
        state,
    } = decode(&documented_order()).unwrap()
    else {
        panic!("an order push");
    };
    assert_eq!(client_order_id, "es1-abc");
    assert_eq!(state.symbol, "MXUSDT");
    assert_eq!(state.order_id, OrderId("C02__505979017439002624115".into()));
    assert_eq!(state.status, ExchangeStatus::Filled);
    assert_eq!(state.executed_qty, decimal("1"));
    assert_eq!(state.cummulative_quote_qty, decimal("3.6962"));
    assert_eq!(state.average_price(), Some(decimal("3.6962")));
    assert_eq!(state.orig_qty, Some(decimal("1")));
    assert_eq!(state.side.as_deref(), Some("SELL"));
    assert_eq!(state.order_type.as_deref(), Some("MARKET"));
    assert_eq!(state.time, Some(1_736_417_034_259));
}

#[test]
fn the_documented_deal_push_reads_as_a_fill_of_my_trades_would() {
    let Push::Deal {
        client_order_id,
        trade,
    } = decode(&documented_deal()).unwrap()
    else {
        panic!("a deal push");
    };
    assert_eq!(client_order_id, "es1-abc");
    assert_eq!(trade.id, "505979017439002624X1");
    assert_eq!(trade.order_id, OrderId("C02__505979017439002624115".into()));
    assert_eq!(trade.qty, decimal("1"));
    assert_eq!(trade.price, decimal("3.6962"));
    assert_eq!(trade.commission, decimal("0.0003998377369698171"));
    assert_eq!(trade.commission_asset.as_deref(), Some("MX"));
    assert_eq!(trade.is_buyer, Some(false));
    assert_eq!(trade.time, Some(1_736_417_034_280));
}

#[test]
fn every_status_mexc_names_maps_and_others_are_errors() {
    let cases = [
        (1, ExchangeStatus::New),
        (2, ExchangeStatus::Filled),
        (3, ExchangeStatus::PartiallyFilled),
        (4, ExchangeStatus::Canceled),
        (5, ExchangeStatus::PartiallyCanceled),
    ];
    for (code, status) in cases {
        let frame = order_frame(|o| o.status = code);
        match decode(&frame).unwrap() {
            Push::Order { state, .. } => assert_eq!(state.status, status),
            other => panic!("{other:?}"),
        }
    }
    for code in [0, 6, -1, i32::MAX] {
        let err = decode(&order_frame(|o| o.status = code)).unwrap_err();
        assert_eq!(err.channel, ORDERS_CHANNEL);
        assert!(err.reason.contains("status"), "{err}");
    }
}

#[test]
fn amounts_that_do_not_read_are_errors_naming_the_channel_and_field() {
    for (text, expected) in [
        ("abc", "cumulativeQuantity \"abc\" is not a decimal"),
        ("-1", "cumulativeQuantity -1 is negative"),
        ("", "cumulativeQuantity is missing"),
        ("1.2.3", "is not a decimal"),
        ("NaN", "is not a decimal"),
    ] {
        let err = decode(&order_frame(|o| o.cumulative_quantity = text.into())).unwrap_err();
        assert_eq!(err.channel, ORDERS_CHANNEL);
        assert!(err.reason.contains(expected), "{text}: {err}");
    }
    let err = decode(&deal_frame(|d| d.price = "1e".into())).unwrap_err();
    assert_eq!(err.channel, DEALS_CHANNEL);
}

#[test]
fn a_push_without_a_client_id_is_someone_elses_and_one_without_ids_an_error() {
    // Orders placed on the website carry no client id: not ours.
    for frame in [
        order_frame(|o| o.client_id.clear()),
        deal_frame(|d| d.client_order_id.clear()),
    ] {
        assert!(matches!(decode(&frame).unwrap(), Push::Other { .. }));
    }
    let err = decode(&deal_frame(|d| d.trade_id.clear())).unwrap_err();
    assert!(err.reason.contains("trade"), "{err}");
    let bodiless = Frame::default().text(1, DEALS_CHANNEL).0;
    assert!(decode(&bodiless).unwrap_err().reason.contains("no body"));
}

#[test]
fn other_channels_are_known_and_not_applied() {
    let account = Frame::default()
        .text(1, "spot@private.account.v3.api.pb")
        .bytes(307, &Frame::default().text(1, "USDT").0)
        .0;
    assert_eq!(
        decode(&account).unwrap(),
        Push::Other {
            channel: "spot@private.account.v3.api.pb".into()
        }
    );
    // A public channel's body (tag 301) is skipped.
    let public = Frame::default()
        .text(1, "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT")
        .bytes(301, b"\x0a\x011")
        .0;
    assert!(matches!(decode(&public).unwrap(), Push::Other { .. }));
}

#[test]
fn bytes_that_are_not_protobuf_are_errors() {
    for frame in [&b"\xff\xff\xff"[..], b"{\"channel\":\"x\"}", b"\x0a\x05ab"] {
        let err = decode(frame).unwrap_err();
        assert_eq!(err.channel, "?");
    }
}

fn order_frame(change: impl FnOnce(&mut PrivateOrders)) -> Vec<u8> {
    let Body::PrivateOrders(mut order) = Wrapper::decode(&documented_order()[..])
        .unwrap()
        .body
        .unwrap()
    else {
        unreachable!()
    };
    change(&mut order);
    Wrapper {
        channel: ORDERS_CHANNEL.into(),
        body: Some(Body::PrivateOrders(order)),
        symbol: Some("MXUSDT".into()),
        ..Wrapper::default()
    }
    .encode_to_vec()
}

fn deal_frame(change: impl FnOnce(&mut PrivateDeals)) -> Vec<u8> {
    let Body::PrivateDeals(mut deal) = Wrapper::decode(&documented_deal()[..])
        .unwrap()
        .body
        .unwrap()
    else {
        unreachable!()
    };
    change(&mut deal);
    Wrapper {
        channel: DEALS_CHANNEL.into(),
        body: Some(Body::PrivateDeals(deal)),
        symbol: Some("MXUSDT".into()),
        ..Wrapper::default()
    }
    .encode_to_vec()
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panicking(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&frame);
    }

    #[test]
    fn amounts_read_back_exactly(units in 0u64..u64::MAX / 2, scale in 0u32..18) {
        let quantity = Decimal::from_i128_with_scale(i128::from(units), scale);
        let frame = order_frame(|o| o.cumulative_quantity = quantity.to_string());
        match decode(&frame).unwrap() {
            Push::Order { state, .. } => prop_assert_eq!(state.executed_qty, quantity),
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
