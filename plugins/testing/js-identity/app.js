// Forwards every record unchanged: the SDK's floor (batch decoding and encoding) in JavaScript.
import { defineTransform } from "sluice";

class Identity {
  transform(record, out) {
    out.forward(record);
  }
}

const plugin = defineTransform(Identity);
export const init = plugin.init;
export const process = plugin.process;
