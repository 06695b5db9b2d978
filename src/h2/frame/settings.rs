//! SETTINGS (RFC 9113 §6.5): the parameters a payload carries, the values a peer may announce, and
//! the frame fc-init writes.

use super::error::{ErrorCode, H2Error};
use super::{be32, setting, Head, Kind, DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE, MAX_WINDOW};

/// The parameters of a SETTINGS payload (whole 6-byte entries; a trailing part is ignored,
/// [`parse`](super::parse) refuses it before).
pub fn settings(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params
        .chunks_exact(6)
        .map(|p| (u16::from_be_bytes([p[0], p[1]]), be32(&p[2..])))
}

/// RFC 9113 §6.5.2: the values a peer may announce. Unknown settings are ignored.
pub(super) fn check_setting(id: u16, value: u32) -> Result<(), H2Error> {
    match id {
        setting::ENABLE_PUSH if value > 1 => Err(H2Error::conn(
            ErrorCode::Protocol,
            "SETTINGS_ENABLE_PUSH not 0 or 1",
        )),
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(H2Error::conn(
            ErrorCode::FlowControl,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
        )),
        setting::MAX_FRAME_SIZE
            if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) =>
        {
            Err(H2Error::conn(
                ErrorCode::Protocol,
                "SETTINGS_MAX_FRAME_SIZE out of range",
            ))
        }
        _ => Ok(()),
    }
}

/// A SETTINGS frame with these parameters.
pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    Head {
        len: 6 * params.len() as u32,
        kind: Kind::Settings,
        flags: 0,
        stream: 0,
    }
    .write(out);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}
