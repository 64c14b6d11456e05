use crate::error::Error;

/// An IANA time zone name that exists in the time zone database
/// (`Europe/London`, `UTC`), as the browser's `Intl` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

impl TimeZone {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let name = raw.trim();
        match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Ok(Self(tz.name().to_string())),
            Err(_) => Err(Error::validation(
                "time_zone",
                format!(
                    "{name:?} is not a time zone name (try one like \"Europe/Paris\" or \"UTC\")."
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_zones_parse_and_others_do_not() {
        assert_eq!(
            TimeZone::parse(" Europe/Paris ").unwrap().as_str(),
            "Europe/Paris"
        );
        assert_eq!(TimeZone::parse("UTC").unwrap().as_str(), "UTC");
        assert!(TimeZone::parse("Mars/Olympus_Mons").is_err());
        assert!(TimeZone::parse("").is_err());
    }
}
