//! The plugins shipped in `plugins/`, embedded into the binary when the
//! `bundled-plugins` feature is on (the default): a config names them as
//! `bundled:<name>`.

use switchyard_runtime::ComponentSource;

/// Names of the plugins bundled into this binary.
#[cfg(feature = "bundled-plugins")]
pub const BUNDLED: &[&str] = &[
    "http", "stripe", "twilio", "sns", "paypal", "square", "adyen",
];
/// Names of the plugins bundled into this binary.
#[cfg(not(feature = "bundled-plugins"))]
pub const BUNDLED: &[&str] = &[];

/// A plugin bundled into this binary.
pub fn bundled(name: &str) -> Option<ComponentSource> {
    #[cfg(feature = "bundled-plugins")]
    {
        let bytes: Option<&'static [u8]> = match name {
            "http" => Some(switchyard_artifacts::HTTP_PLUGIN),
            "stripe" => Some(switchyard_artifacts::STRIPE_PLUGIN),
            "twilio" => Some(switchyard_artifacts::TWILIO_PLUGIN),
            "sns" => Some(switchyard_artifacts::SNS_PLUGIN),
            "paypal" => Some(switchyard_artifacts::PAYPAL_PLUGIN),
            "square" => Some(switchyard_artifacts::SQUARE_PLUGIN),
            "adyen" => Some(switchyard_artifacts::ADYEN_PLUGIN),
            _ => None,
        };
        if let Some(b) = bytes {
            return Some(ComponentSource::Bytes(b.into()));
        }
    }
    let _ = name;
    None
}
