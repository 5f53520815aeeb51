/// Tenant prompt templates (the pipeline's prompt stage uses it): pick the tenant's template, render it, apply the mode.
public enum PromptTemplating {
    /// Returns the request to forward (tenant prompt applied, `metadata.prompt` removed) and the
    /// template that served it, if any. `requested` is the `X-TenantGate-Prompt` header.
    public static func apply(
        _ chat: ChatRequest, tenant: TenantConfig, model: String, requested: String?, epochSeconds: Int64,
        verifiedUser: String? = nil
    ) throws(GatewayError) -> (ChatRequest, ServedPrompt?) {
        var body = chat.body
        var name = requested
        if let metadata = body["metadata"], metadata != .null {
            guard case .object = metadata else {
                throw GatewayError.invalidRequest("'metadata' must be an object.", param: "metadata")
            }
            if let picked = metadata["prompt"] {
                guard let text = picked.stringValue else {
                    throw GatewayError.invalidRequest("'metadata.prompt' must be a string.", param: "metadata.prompt")
                }
                name = name ?? text
                let rest = metadata.removing("prompt")
                body = rest.objectValue?.isEmpty == true ? body.removing("metadata") : body.setting("metadata", rest)
            }
        }
        var served: ServedPrompt?
        if let name, !name.isEmpty {
            guard let prompt = tenant.prompts[name] else { throw GatewayError.unknownPrompt(String(name.prefix(64))) }
            served = prompt
        } else {
            served = tenant.prompts["default"]
        }
        var values = tenant.variables
        values["tenant.id"] = tenant.id.rawValue
        values["tenant.name"] = tenant.name
        values["model"] = model
        values["date"] = CivilDate.isoDate(epochSeconds: epochSeconds)
        values["user"] = PromptTemplating.userLabel(verified: verifiedUser, claimed: chat.user)
        let rendered = served?.template.render(values)
        let messages = try PromptApplier.apply(rendered, mode: tenant.promptMode, to: chat.messages)
        if messages != chat.messages || body != chat.body {
            body = body.setting("messages", .array(messages))
            var next = try ChatRequest.validate(body)
            next.extraPromptTokens = chat.extraPromptTokens
            return (next, served)
        }
        return (chat, served)
    }

    /// What `{{user}}` renders to: the verified JWT subject, else the client's `user` when it is a plain
    /// label (letters, digits and `._@:+-`, at most 128 bytes), else nothing. The rendered prompt is not
    /// checked by the ingress rules and may be `locked`: free text from the client must never reach it.
    public static func userLabel(verified: String?, claimed: String?) -> String {
        // With a verified subject the client's claim is never used, even when the subject is no label.
        if let verified { return isLabel(verified) ? verified : "" }
        if let claimed, isLabel(claimed) { return claimed }
        return ""
    }

    /// Whether `text` is a plain identifier a system prompt may carry.
    public static func isLabel(_ text: String) -> Bool {
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= 128 else { return false }
        return bytes.allSatisfy { b in
            (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
                || b == 0x2E || b == 0x5F || b == 0x40 || b == 0x3A || b == 0x2B || b == 0x2D
        }
    }
}
