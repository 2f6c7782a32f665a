//! Input checks shared by the workflow and (later) the gateway: one strict format per id, bounded
//! sizes, so nothing odd reaches history, SQL or partner calls.

use std::time::Duration;

use crate::domain::{Address, DeliveryOrderInput, ItemFormat};

/// Longest accepted reference id (ordering, customer, payment, event, correlation, actor).
pub const MAX_REF_LEN: usize = 128;
/// Most line items one delivery order may carry.
pub const MAX_ITEMS: usize = 200;
/// Most units of one line item.
pub const MAX_QUANTITY: u32 = 10_000;
/// Shortest and longest accepted deadline override.
pub const MIN_DEADLINE: Duration = Duration::from_secs(1);
pub const MAX_DEADLINE: Duration = Duration::from_secs(365 * 86_400);

/// Delivery order ids are canonical lower-case hyphenated UUIDs.
pub fn check_delivery_order_id(id: &str) -> Result<(), String> {
    match uuid::Uuid::parse_str(id) {
        Ok(uuid) if uuid.hyphenated().to_string() == id => Ok(()),
        _ => Err(format!(
            "delivery_order_id must be a lower-case hyphenated UUID, got {:?}",
            truncate(id)
        )),
    }
}

/// Reference ids: 1–128 characters of `A-Z a-z 0-9 . _ : -`.
pub fn check_ref_id(field: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REF_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} must be 1-{MAX_REF_LEN} characters of letters, digits, '.', '_', ':' or '-', got {:?}",
            truncate(id)
        ))
    }
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if text.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

fn check_address(a: &Address) -> Result<(), String> {
    check_text("shipping_address.name", &a.name, 200)?;
    check_text("shipping_address.line1", &a.line1, 200)?;
    if let Some(line2) = &a.line2 {
        check_text("shipping_address.line2", line2, 200)?;
    }
    check_text("shipping_address.city", &a.city, 100)?;
    check_text("shipping_address.postal_code", &a.postal_code, 20)?;
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "shipping_address.country must be an ISO 3166-1 alpha-2 code like \"DE\", got {:?}",
            truncate(&a.country)
        ));
    }
    if let Some(phone) = &a.phone {
        check_text("shipping_address.phone", phone, 40)?;
    }
    Ok(())
}

/// Everything a delivery order needs before it may start.
pub fn check_input(input: &DeliveryOrderInput) -> Result<(), String> {
    check_delivery_order_id(&input.delivery_order_id)?;
    check_ref_id("ordering_id", &input.ordering_id)?;
    check_ref_id("customer_id", &input.customer_id)?;
    if let Some(payment_id) = &input.payment_id {
        check_ref_id("payment_id", payment_id)?;
    }
    if let Some(replaces) = &input.replaces_id {
        check_delivery_order_id(replaces)
            .map_err(|e| e.replace("delivery_order_id", "replaces_id"))?;
    }
    if let Some(correlation_id) = &input.correlation_id {
        check_ref_id("correlation_id", correlation_id)?;
    }
    if input.items.is_empty() || input.items.len() > MAX_ITEMS {
        return Err(format!("items must hold 1-{MAX_ITEMS} entries"));
    }
    for (i, item) in input.items.iter().enumerate() {
        check_ref_id(&format!("items[{i}].sku"), &item.sku)?;
        check_text(&format!("items[{i}].title"), &item.title, 300)?;
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            return Err(format!("items[{i}].quantity must be 1-{MAX_QUANTITY}"));
        }
    }
    if !input.items.iter().any(|i| i.format == ItemFormat::Physical) {
        return Err("a delivery order needs at least one PHYSICAL item".into());
    }
    check_address(&input.shipping_address)?;
    if let Some(notes) = &input.notes {
        check_text("notes", notes, 2000)?;
    }
    for (name, value) in [
        ("pickup_deadline", input.deadlines.pickup_deadline),
        ("delivery_deadline", input.deadlines.delivery_deadline),
        ("auto_confirm", input.deadlines.auto_confirm),
    ] {
        if let Some(d) = value
            && !(MIN_DEADLINE..=MAX_DEADLINE).contains(&d)
        {
            return Err(format!("deadlines.{name} must be between 1s and 365d"));
        }
    }
    Ok(())
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_order_ids_have_one_format() {
        assert!(check_delivery_order_id("0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e").is_ok());
        for bad in [
            "",
            "0196A3B0-7C1E-7CC0-9D1E-2F3A4B5C6D7E",
            "0196a3b07c1e7cc09d1e2f3a4b5c6d7e",
            "{0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e}",
            "1; DROP TABLE delivery_orders",
        ] {
            assert!(check_delivery_order_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ref_ids_reject_odd_characters_and_length() {
        assert!(check_ref_id("ordering_id", "ord-2026.11:42_a").is_ok());
        for bad in ["", "a b", "x'; --", "ü", &"a".repeat(MAX_REF_LEN + 1)] {
            assert!(
                check_ref_id("ordering_id", bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
