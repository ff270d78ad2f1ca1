//! The wire numbers of the domain's enums: the one place that knows them.
//! The domain names its values; the protobuf enums number them.

use truce_domain::{
    incident::IncidentStatus,
    report::{CasualtyGroup, Category, LocationPrecision, TimePrecision, Zone},
};

use crate::v1;

/// A domain enum carried on the wire as its protobuf enum's number.
pub trait WireEnum: Sized + Copy {
    /// The wire number.
    fn number(self) -> i32;
    /// From a wire number; `None` for 0 (unspecified) and unknown numbers.
    fn from_number(number: i32) -> Option<Self>;
}

/// Pairs each domain value with the protobuf value of the same name.
macro_rules! wire_enums {
    ($($domain:ident => $wire:ident { $($variant:ident),+ $(,)? })+) => {$(
        impl WireEnum for $domain {
            fn number(self) -> i32 {
                match self {
                    $($domain::$variant => v1::$wire::$variant as i32,)+
                }
            }

            fn from_number(number: i32) -> Option<Self> {
                match v1::$wire::try_from(number).ok()? {
                    $(v1::$wire::$variant => Some($domain::$variant),)+
                    _ => None,
                }
            }
        }
    )+};
}

wire_enums! {
    TimePrecision => TimePrecision { Exact, Hour, Day }
    Zone => Zone { IsraeliControlled, PalestinianControlled, AtLine, HumanitarianCorridor }
    LocationPrecision => LocationPrecision { Exact, Near, Area, Region }
    Category => Category {
        LineCrossing, SmallArmsFire, AirStrike, Shelling, ExplosiveDevice, CorridorMisuse, AidObstruction,
        MonitorAccessDenied, TunnelActivity, HostageRemainsReturned, HostageRemainsWithheld, WeaponsStorage,
        WeaponsManufacture, WeaponsImport, WeaponsHandover, Detention, Other,
    }
    CasualtyGroup => CasualtyGroup { Civilians, Combatants, SecurityForces, Unknown }
    IncidentStatus => IncidentStatus { Reported, UnderReview, ConfirmedBreach, NotABreach, Disputed, Inconclusive }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: WireEnum + PartialEq + std::fmt::Debug>(all: &[T], name: impl Fn(T) -> &'static str) {
        for &value in all {
            assert_eq!(T::from_number(value.number()), Some(value), "{}", name(value));
        }
        assert_eq!(T::from_number(0), None, "unspecified is no value");
        assert_eq!(T::from_number(99), None, "nor is an unknown number");
    }

    #[test]
    fn every_value_has_a_number_of_its_own_and_comes_back_from_it() {
        round_trips(TimePrecision::ALL, TimePrecision::name);
        round_trips(Zone::ALL, Zone::name);
        round_trips(LocationPrecision::ALL, LocationPrecision::name);
        round_trips(Category::ALL, Category::name);
        round_trips(CasualtyGroup::ALL, CasualtyGroup::name);
        round_trips(IncidentStatus::ALL, IncidentStatus::name);
    }

    #[test]
    fn a_value_keeps_the_wire_name_it_is_named_by() {
        assert_eq!(
            v1::Category::try_from(Category::HostageRemainsWithheld.number()).map(|c| c.as_str_name().to_owned()),
            Ok(format!("CATEGORY_{}", Category::HostageRemainsWithheld.name()))
        );
        for &status in IncidentStatus::ALL {
            let wire = v1::IncidentStatus::try_from(status.number()).unwrap();
            assert_eq!(wire.as_str_name(), format!("INCIDENT_STATUS_{}", status.name()));
        }
    }
}
