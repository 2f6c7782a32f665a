import { describe, expect, it } from "vitest";
import { hasRole, isOperator, parseToken } from "./session";
import { token } from "./test/fakes";

describe("parseToken", () => {
  it("reads subject and roles, with or without the Bearer prefix", () => {
    const session = parseToken(`Bearer ${token("alice", ["operator"])}`);
    expect(session.sub).toBe("alice");
    expect(isOperator(session)).toBe(true);
    expect(hasRole(session, "customer")).toBe(false);
  });

  it("refuses what is not a usable token, saying why", () => {
    expect(() => parseToken("hello")).toThrow(/three parts/);
    expect(() => parseToken("a.!!!.c")).toThrow(/cannot be read/);
    expect(() => parseToken(token("bob", ["customer"], -10))).toThrow(/expired/);
  });
});
