//! What every builder ends with: create or replace the definition.

use crate::definition::{DefineError, Definition};
use crate::switchyard::Switchyard;

pub(crate) fn commit(
    yard: &Switchyard,
    def: Result<Definition, DefineError>,
    replace: bool,
) -> Result<(), DefineError> {
    let def = def?;
    if replace {
        yard.update(def)
    } else {
        yard.create(def)
    }
}
