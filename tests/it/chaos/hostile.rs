//! Generated malformed and hostile messages, each with the outcome the
//! contract promises for it.

/// What must become of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A REJECTED result for this order id.
    Rejected(String),
    /// A dead letter holding exactly these bytes.
    DeadLetter(Vec<u8>),
    /// Acknowledged and ignored (another `type`).
    Ignored,
}

/// A small deterministic generator (SplitMix64), so a failing run can be
/// repeated from its printed seed.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn text(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'A' + self.below(26) as u8))
            .collect()
    }
}

/// The `n`th hostile message of a run (unique, so no shim de-duplication).
pub fn hostile(generator: &mut Gen, n: usize) -> (Vec<u8>, Expected) {
    let id = format!("bad-{n}");
    let named = |payload: String| (payload.into_bytes(), Expected::Rejected(id.clone()));
    let unnamed = |payload: Vec<u8>| (payload.clone(), Expected::DeadLetter(payload));
    match generator.below(12) {
        0 => {
            let mut bytes: Vec<u8> = (0..1 + generator.below(64))
                .map(|_| generator.below(256) as u8)
                .collect();
            bytes.extend_from_slice(format!("#{n}").as_bytes());
            bytes.insert(0, 0xff);
            unnamed(bytes)
        }
        1 => {
            let full = format!(
                r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"BUY","quantity":1,"price":10}}"#
            );
            let cut = 1 + generator.below(full.len() as u64 - 2) as usize;
            unnamed(format!("{}{}", &full[..cut], " ".repeat(n)).into_bytes())
        }
        2 => {
            let len = 1 + generator.below(8) as usize;
            let side = generator.text(len);
            named(format!(
                r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"X{side}","quantity":1}}"#
            ))
        }
        3 => {
            let quantity =
                ["abc", "1,5", "0x10", "", "--1", "NaN", "1e", "inf"][generator.below(8) as usize];
            named(format!(
                r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"BUY","quantity":"{quantity}"}}"#
            ))
        }
        4 => {
            let places = 9 + generator.below(20) as usize;
            named(format!(
                r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"SELL","quantity":0.{}1}}"#,
                "0".repeat(places)
            ))
        }
        5 => {
            let len = 33 + generator.below(20_000) as usize;
            let symbol = generator.text(len);
            named(format!(
                r#"{{"order_id":"{id}","symbol":"{symbol}","side":"BUY","quantity":1}}"#
            ))
        }
        6 => {
            let body = [
                "[]",
                "42",
                "\"text\"",
                "null",
                "true",
                "[{\"order_id\":\"x\"}]",
            ][generator.below(6) as usize];
            unnamed(format!("{body}{}", " ".repeat(n)).into_bytes())
        }
        7 => unnamed(format!(r#"{{"symbol":"BTCUSDT","side":"BUY","nonce":{n}}}"#).into_bytes()),
        8 => (
            format!(r#"{{"type":"heartbeat","order_id":"{id}"}}"#).into_bytes(),
            Expected::Ignored,
        ),
        9 => named(format!(
            r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"BU\u0000Y","quantity":1}}"#
        )),
        10 => named(format!(
            r#"{{"order_id":"{id}","symbol":{{"a":1}},"side":["BUY"],"quantity":true}}"#
        )),
        _ => {
            let huge = format!("1{}", "0".repeat(13 + generator.below(400) as usize));
            named(format!(
                r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"BUY","quantity":{huge},"price":-1}}"#
            ))
        }
    }
}
