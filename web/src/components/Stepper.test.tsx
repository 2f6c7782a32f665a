import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Stepper } from "./Stepper";

describe("Stepper", () => {
  it("names every stage, its time, and which one is current, in words", () => {
    render(
      <Stepper
        steps={[
          { state: "CREATED", reached_at: "2026-11-20T09:00:00Z", current: false },
          { state: "PICKED_UP", reached_at: "2026-11-20T10:30:00Z", current: true },
          { state: "DELIVERED", current: false },
          { state: "DELIVERY_CONFIRMED", current: false },
        ]}
      />,
    );
    const items = screen.getAllByRole("listitem");
    expect(items.map((i) => i.textContent)).toEqual([
      expect.stringMatching(/Order placed.*\(done\)/),
      expect.stringMatching(/Picked up.*\(current stage\)/),
      expect.stringMatching(/Delivered.*not yet.*\(to come\)/),
      expect.stringMatching(/Receipt confirmed.*not yet/),
    ]);
    expect(items[1].getAttribute("aria-current")).toBe("step");
    expect(items[0].querySelector("time")?.getAttribute("dateTime")).toBe("2026-11-20T09:00:00Z");
  });
});
