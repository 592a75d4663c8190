//! Conversions between `SocketAddress` and `std::net::SocketAddr`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::command::{IpAddress, SocketAddress, Uint128, ip_address};

/// A `SocketAddress` that does not describe a real socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// The port does not fit in 16 bits.
    PortOutOfRange(u32),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PortOutOfRange(port) => write!(f, "port {port} does not fit in 16 bits"),
        }
    }
}

impl std::error::Error for AddressError {}

impl From<SocketAddr> for SocketAddress {
    fn from(addr: SocketAddr) -> Self {
        let inner = match addr.ip() {
            IpAddr::V4(v4) => ip_address::Inner::V4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let value = u128::from(v6);
                // low = least significant 64 bits, high = most significant (Sōzu's code)
                ip_address::Inner::V6(Uint128 { low: value as u64, high: (value >> 64) as u64 })
            }
        };
        SocketAddress { ip: IpAddress { inner: Some(inner) }, port: u32::from(addr.port()) }
    }
}

impl TryFrom<&SocketAddress> for SocketAddr {
    type Error = AddressError;

    fn try_from(addr: &SocketAddress) -> Result<Self, Self::Error> {
        let port = u16::try_from(addr.port).map_err(|_| AddressError::PortOutOfRange(addr.port))?;
        let ip = match &addr.ip.inner {
            // a missing address decodes as 0.0.0.0, as in Sōzu
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(ip_address::Inner::V4(v4)) => IpAddr::V4(Ipv4Addr::from(*v4)),
            Some(ip_address::Inner::V6(v6)) => {
                IpAddr::V6(Ipv6Addr::from((u128::from(v6.high) << 64) | u128::from(v6.low)))
            }
        };
        Ok(SocketAddr::new(ip, port))
    }
}

impl fmt::Display for SocketAddress {
    /// `ip:port` (`[v6]:port`); an out-of-range port is shown as is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SocketAddr::try_from(self) {
            Ok(addr) => addr.fmt(f),
            Err(_) => {
                let ip = SocketAddress { ip: self.ip, port: 0 };
                let addr = SocketAddr::try_from(&ip).map_err(|_| fmt::Error)?;
                match addr.ip() {
                    IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
                    IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_is_big_endian_number() {
        let addr: SocketAddress = "127.0.0.1:80".parse::<SocketAddr>().unwrap().into();
        assert_eq!(addr.ip.inner, Some(ip_address::Inner::V4(2_130_706_433)));
        assert_eq!(SocketAddr::try_from(&addr).unwrap().to_string(), "127.0.0.1:80");
    }

    #[test]
    fn v6_low_is_least_significant() {
        let addr: SocketAddress = "[::1]:443".parse::<SocketAddr>().unwrap().into();
        assert_eq!(addr.ip.inner, Some(ip_address::Inner::V6(Uint128 { low: 1, high: 0 })));
        assert_eq!(addr.to_string(), "[::1]:443");
    }

    #[test]
    fn port_out_of_range_is_an_error() {
        let addr = SocketAddress { ip: IpAddress { inner: None }, port: 70_000 };
        assert_eq!(SocketAddr::try_from(&addr), Err(AddressError::PortOutOfRange(70_000)));
        assert_eq!(addr.to_string(), "0.0.0.0:70000");
    }
}
