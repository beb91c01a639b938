# Source: 1.2 Flaskによる推論API — 「エラーハンドリング」, error_handling.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# error_handling.py - 堅牢なエラーハンドリング
from flask import Flask, request, jsonify
import joblib
import numpy as np

app = Flask(__name__)
model = joblib.load('iris_model.pkl')
class_names = ['setosa', 'versicolor', 'virginica']

def validate_input(data):
    """入力データの検証"""
    if 'features' not in data:
        raise ValueError("'features' キーが必要です")

    features = data['features']

    if not isinstance(features, list):
        raise ValueError("features はリストである必要があります")

    if len(features) != 4:
        raise ValueError(f"features は4要素必要です(受信: {len(features)})")

    return np.array(features).reshape(1, -1)

@app.route('/predict', methods=['POST'])
def predict():
    try:
        data = request.get_json()

        # 入力検証
        features = validate_input(data)

        # 予測
        prediction = model.predict(features)[0]
        probabilities = model.predict_proba(features)[0]

        return jsonify({
            'prediction': class_names[prediction],
            'class_id': int(prediction),
            'probabilities': {
                class_names[i]: float(prob)
                for i, prob in enumerate(probabilities)
            }
        }), 200

    except ValueError as e:
        return jsonify({'error': f'入力エラー: {str(e)}'}), 400
    except Exception as e:
        return jsonify({'error': f'サーバーエラー: {str(e)}'}), 500

@app.errorhandler(404)
def not_found(error):
    return jsonify({'error': 'エンドポイントが見つかりません'}), 404

if __name__ == '__main__':
    app.run(debug=False, host='0.0.0.0', port=5000)
