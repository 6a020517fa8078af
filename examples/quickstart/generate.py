"""Regenerate the quickstart's sample data (deterministic): ``python generate.py [FOLDER]``.

Four sources that overlap the way real ones do: a CRM export (CSV), a web shop's customers
(JSON lines, nested), a newsletter list (CSV, other column names) and the shop's orders (JSON
lines, as activities). Many people appear in several sources; some rows are broken on purpose.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import orjson

from crmhub.sampledata import SampleOptions, iter_people


def main(out: Path) -> None:
    people = list(
        iter_people(420, SampleOptions(seed=2024, duplicate_rate=0.08, invalid_rate=0.03))
    )
    rng = random.Random(2024)
    out.mkdir(exist_ok=True)

    crm = people[:300]
    with (out / "crm_contacts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(crm[0]))
        writer.writeheader()
        writer.writerows(crm)
    # A row cut short by a broken export, as real files have.
    with (out / "crm_contacts.csv").open("a", encoding="utf-8") as handle:
        handle.write("p9999999,Broken,Row\n")

    shop = people[220:]
    with (out / "shop_customers.jsonl").open("wb") as handle:
        for person in shop:
            record = {
                "customer_id": f"shop-{person['id']}",
                "name": {"first": person["first_name"], "last": person["last_name"]},
                "contact": {"email": person["email"], "phone": person["phone"] or None},
                "shipping": {
                    "street": person["street"],
                    "city": person["city"],
                    "zip": person["postcode"],
                    "country": person["country"],
                },
                "marketing_opt_in": person["newsletter"] == "yes",
                "modified": person["updated_at"],
            }
            handle.write(orjson.dumps(record) + b"\n")
        handle.write(b'{"customer_id": "shop-x", "name": \n')  # a truncated line

    subscribers = rng.sample([p for p in people if "@" in p["email"]], 120)
    with (out / "newsletter.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email Address", "First Name", "Last Name", "Status", "OPTIN_TIME"])
        for person in subscribers:
            writer.writerow(
                [
                    person["email"].upper(),
                    person["first_name"],
                    person["last_name"],
                    rng.choice(["subscribed", "unsubscribed"]),
                    person["updated_at"],
                ]
            )

    with (out / "orders.jsonl").open("wb") as handle:
        for number in range(400):
            customer = rng.choice(shop)
            order = {
                "id": f"ord-{number:05d}",
                "customer_id": f"shop-{customer['id']}",
                "type": "order",
                "occurred_at": f"2024-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}T{rng.randint(8, 20):02d}:00:00Z",
                "amount": f"{rng.randint(500, 25000) / 100:.2f}",
                "currency": "EUR",
                "status": rng.choice(["paid", "paid", "paid", "refunded"]),
                "subject": f"Order {number:05d}",
                "updated_at": "2024-12-31T00:00:00Z",
            }
            handle.write(orjson.dumps(order) + b"\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
