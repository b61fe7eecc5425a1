"""Orders and payments of a web shop: look-alike actions (cancel vs return) with different preconditions.

World keys: `orders` (id -> status, customer_email, items [{sku, name, quantity, unit_price}], total,
currency, payment_id, shipping_address), `payments` (id -> amount, currency, refunded, status).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .base import ToolError, World, mock_tool

OrderStatus = Literal["pending", "shipped", "delivered", "cancelled", "returned"]


class ReturnItem(BaseModel):
    """One line of a return."""

    sku: str = Field(description="The item's SKU, as shown in the order.")
    quantity: int = Field(ge=1, description="How many units to return.")


class Money(BaseModel):
    """An amount of money."""

    amount: float = Field(gt=0, description="The amount, e.g. 19.99.")
    currency: Literal["USD", "EUR", "GBP"] = Field(description="ISO currency code.")


class Address(BaseModel):
    """A postal address."""

    street: str = Field(description="Street and number.")
    city: str
    postal_code: str
    country: str = Field(pattern=r"^[A-Z]{2}$", description="Two-letter ISO country code, e.g. DE.")


def _order(world: World, order_id: str) -> dict:
    order = world.get("orders", {}).get(order_id.strip().upper())
    if order is None:
        raise ToolError(f"no order {order_id!r}; search_orders finds a customer's orders")
    return order


def _summary(order_id: str, order: dict) -> dict:
    return {"order_id": order_id, "status": order["status"], "placed": order.get("placed"), "total": order["total"],
            "currency": order["currency"], "items": [i["name"] for i in order["items"]]}


@mock_tool
def search_orders(world: World, customer_email: str, status: OrderStatus | None = None) -> dict:
    """Find a customer's orders, newest first.

    Args:
        customer_email: The customer's email address.
        status: Only orders in this status.
    """
    found = [
        _summary(i, o)
        for i, o in world.get("orders", {}).items()
        if o["customer_email"].casefold() == customer_email.strip().casefold() and status in (None, o["status"])
    ]
    return {"orders": sorted(found, key=lambda o: o.get("placed") or "", reverse=True)}


@mock_tool
def get_order(world: World, order_id: str) -> dict:
    """Get one order in full: status, items with SKUs, total, payment id, shipping address.

    Args:
        order_id: The order id, e.g. "A1001".
    """
    return {"order_id": order_id.strip().upper(), **_order(world, order_id)}


@mock_tool
def cancel_order(
    world: World, order_id: str, reason: Literal["no longer needed", "ordered by mistake", "found cheaper"]
) -> dict:
    """Cancel an order that has NOT shipped yet (status pending). Shipped or delivered orders cannot be cancelled.

    Args:
        order_id: The order id, e.g. "A1001".
        reason: Why the customer cancels.
    """
    order = _order(world, order_id)
    if order["status"] != "pending":
        hint = "; delivered orders can be returned with return_order" if order["status"] == "delivered" else ""
        raise ToolError(f"order {order_id} is {order['status']} and cannot be cancelled{hint}")
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    payment = world.get("payments", {}).get(order.get("payment_id"))
    if payment is not None:
        payment["refunded"] = payment["amount"]
        payment["status"] = "refunded"
    return {"order_id": order_id, "status": "cancelled", "refunded": order["total"], "currency": order["currency"]}


@mock_tool
def return_order(
    world: World,
    order_id: str,
    items: list[ReturnItem],
    reason: Literal["damaged", "wrong item", "not as described", "changed mind"],
) -> dict:
    """Start a return for items of a DELIVERED order; the refund follows when the items arrive.

    Args:
        order_id: The order id, e.g. "A1001".
        items: The items to return, by SKU, with quantities.
        reason: Why the items go back.
    """
    order = _order(world, order_id)
    if order["status"] != "delivered":
        hint = "; orders that have not shipped can be cancelled with cancel_order" if order["status"] == "pending" else ""
        raise ToolError(f"order {order_id} is {order['status']}; only delivered orders can be returned{hint}")
    if not items:
        raise ToolError("name at least one item to return (SKU and quantity)")
    lines = {i["sku"]: i for i in order["items"]}
    for item in items:
        line = lines.get(item.sku)
        if line is None:
            raise ToolError(f"order {order_id} has no item with SKU {item.sku!r}; its SKUs are {sorted(lines)}")
        if item.quantity > line["quantity"]:
            raise ToolError(f"order {order_id} has only {line['quantity']} of {item.sku}")
    returns = world.setdefault("returns", [])
    rma = f"RMA-{len(returns) + 501}"
    returns.append({"id": rma, "order_id": order_id, "items": [i.model_dump() for i in items], "reason": reason})
    return {"return_id": rma, "order_id": order_id, "status": "return started", "label": f"https://returns.example/{rma}"}


@mock_tool
def get_payment(world: World, payment_id: str) -> dict:
    """Get a payment: amount, currency, method and how much was already refunded.

    Args:
        payment_id: The payment id, e.g. "PAY-7".
    """
    payment = world.get("payments", {}).get(payment_id)
    if payment is None:
        raise ToolError(f"no payment {payment_id!r}; get_order shows an order's payment_id")
    return {"payment_id": payment_id, **payment}


@mock_tool
def refund_payment(world: World, payment_id: str, amount: Money) -> dict:
    """Refund part or all of a payment to the original payment method.

    Args:
        payment_id: The payment id, e.g. "PAY-7" (not the order id).
        amount: How much to refund, in the payment's currency.
    """
    payment = world.get("payments", {}).get(payment_id)
    if payment is None:
        raise ToolError(f"no payment {payment_id!r}; get_order shows an order's payment_id")
    if amount.currency != payment["currency"]:
        raise ToolError(f"payment {payment_id} is in {payment['currency']}, not {amount.currency}")
    left = round(payment["amount"] - payment.get("refunded", 0), 2)
    if amount.amount > left + 1e-9:
        raise ToolError(f"only {left} {payment['currency']} of payment {payment_id} can still be refunded")
    payment["refunded"] = round(payment.get("refunded", 0) + amount.amount, 2)
    payment["status"] = "refunded" if abs(payment["refunded"] - payment["amount"]) < 1e-9 else "partially refunded"
    return {"payment_id": payment_id, "refunded": amount.amount, "currency": amount.currency, "status": payment["status"]}


@mock_tool
def update_shipping_address(world: World, order_id: str, address: Address) -> dict:
    """Change where a pending order will be shipped.

    Args:
        order_id: The order id, e.g. "A1001".
        address: The new address.
    """
    order = _order(world, order_id)
    if order["status"] != "pending":
        raise ToolError(f"order {order_id} is {order['status']}; the address can only change before shipping")
    order["shipping_address"] = address.model_dump()
    return {"order_id": order_id, "shipping_address": order["shipping_address"]}
